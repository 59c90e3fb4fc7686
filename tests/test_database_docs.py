"""The SQL in docs/database.md runs on a database pitgrid wrote, and finds what it says."""
import dataclasses
import sqlite3

import polars as pl

from pitgrid.results.db import ResultsDB
from results_helpers import doc_queries, grid_run, sma_run


def test_the_pages_sqlite_queries_run_and_find_rows(tmp_path):
    single = sma_run()
    no_sortino = single.metrics.with_columns(pl.lit(float("nan")).alias("sortino"))
    path = tmp_path / "pitgrid.db"
    with ResultsDB(path) as db:
        grid_id = db.save_run(grid_run(), strategy="MovingAverageCross", data_fingerprint="fp")
        db.save_run(dataclasses.replace(single, metrics=no_sortino, extra={"model_sha256": "ab" * 32}),
                    strategy="ModelStrategy", data_fingerprint="fp")
    queries = doc_queries()
    assert len(queries) >= 8
    conn = sqlite3.connect(path)
    for query in queries:
        rows = conn.execute(query.replace("c1d6%", grid_id[:4] + "%")
                            .replace("'2011-01-01' AND '2011-12-31'", "'2000-01-01' AND '2100-01-01'")
                            ).fetchall()
        assert rows, f"no rows from:\n{query}"
    conn.close()

