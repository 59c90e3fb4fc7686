"""asv benchmarks and benchmark scripts (see benches/README.md)."""
