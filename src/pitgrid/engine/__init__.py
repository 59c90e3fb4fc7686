"""The simulation engine: configuration, the compiled step core's Python face, results and metrics."""
