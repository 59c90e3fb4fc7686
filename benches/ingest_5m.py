"""Ingest benchmark: 5 million long-format rows (2,000 symbols x 2,500 daily bars).

Writes a synthetic CSV to a temporary directory, ingests it in a fresh child process
(so the peak RSS is the ingest's own, not the generator's) and prints one JSON line:

    $ python benches/ingest_5m.py
    {"rows": 5000000, "csv_mb": ..., "ingest_seconds": ..., "peak_rss_mb": ..., ...}

Options: ``--symbols N --bars N`` change the size.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def write_csv(path: Path, n_symbols: int, n_bars: int, seed: int = 0) -> int:
    """A clean long CSV sorted by symbol then time, with a few gaps; returns the row count."""
    rng = np.random.default_rng(seed)
    dates = np.busday_offset("2000-01-03", np.arange(n_bars), roll="forward")
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_symbols, n_bars)), axis=1))
    spread = np.abs(rng.normal(0, 0.01, (n_symbols, n_bars)))
    open_ = close * np.exp(rng.normal(0, 0.005, (n_symbols, n_bars)))
    high = np.maximum(open_, close) * (1 + spread)
    low = np.minimum(open_, close) * (1 - spread)
    keep = rng.random((n_symbols, n_bars)) > 0.001
    frame = pl.DataFrame({
        "time": np.tile(np.datetime_as_string(dates, unit="D"), n_symbols)[keep.ravel()],
        "symbol": np.repeat([f"SYM{i:05d}" for i in range(n_symbols)], n_bars)[keep.ravel()],
        "open": open_[keep].round(4), "high": high[keep].round(4), "low": low[keep].round(4),
        "close": close[keep].round(4), "volume": rng.integers(1_000, 1_000_000, keep.sum()).astype(float),
    })
    frame.write_csv(path)
    return len(frame)


def _ingest_child(csv: str, store: str) -> None:
    import pitgrid as pg

    started = time.perf_counter()
    pg.ingest(csv, store, progress=False)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(json.dumps({"ingest_seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=2000)
    parser.add_argument("--bars", type=int, default=2500)
    parser.add_argument("--child", nargs=2, metavar=("CSV", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _ingest_child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="pitgrid-bench-") as tmp:
        csv, store = Path(tmp) / "bars.csv", Path(tmp) / "bars.pitgrid"
        started = time.perf_counter()
        rows = write_csv(csv, args.symbols, args.bars)
        generate = time.perf_counter() - started
        child = subprocess.run([sys.executable, __file__, "--child", str(csv), str(store)],
                               check=True, capture_output=True, text=True)
        result = {
            "rows": rows, "symbols": args.symbols, "bars": args.bars,
            "csv_mb": round(csv.stat().st_size / 2**20, 1),
            "generate_seconds": round(generate, 2),
            **json.loads(child.stdout.strip().splitlines()[-1]),
            "store_mb": round(sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 2**20, 1),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
