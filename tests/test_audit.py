"""Where users meet the point-in-time check: backtest(audit=True), [outputs] audit, pitgrid check,
and pitgrid.testing.assert_causal."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

import pitgrid as pg
from pitgrid.cli import app
from pitgrid.strategies import CrossSectionalMomentum, EventDriven, MovingAverageCross
from pitgrid.testing import assert_causal, random_market

from strategies_for_tests import CentredAverage

runner = CliRunner()


def test_backtest_with_audit_records_the_outcome_with_the_run(tmp_path):
    market = random_market(150, 5, seed=2)
    res = pg.backtest(market, MovingAverageCross(fast=5, slow=20), {"fees_bps": 5}, audit=True)
    assert res.extra["audit"].ok and res.config["audit"].startswith("point-in-time: ok")
    leaky = pg.backtest(market, CentredAverage(), {"fees_bps": 5}, audit=True)
    assert "LEAK" in leaky.config["audit"]
    with pg.ResultsDB(tmp_path / "r.db") as db:
        stored = db.load_run(db.save_run(leaky, strategy="leaky", data_fingerprint="x"))
    assert "LEAK" in stored.config["audit"]
    report = pg.write_report(stored, tmp_path / "r.html")
    assert "point-in-time audit" in report.read_text() and "LEAK" in report.read_text()


CONFIG = """
[data]
synthetic = {{ n_time = 200, n_symbols = 6 }}
[strategy]
name = "{name}"
[outputs]
db = "{db}"
reports = "{reports}"
audit = true
"""


def test_pitgrid_check_and_audited_runs_from_a_config(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(CONFIG.format(name="ma_cross", db=tmp_path / "r.db", reports=tmp_path / "rep"))
    out = runner.invoke(app, ["check", str(config)])
    assert out.exit_code == 0 and "point-in-time: ok at every bar" in out.output, out.output
    assert runner.invoke(app, ["run", str(config)]).exit_code == 0
    with pg.ResultsDB(tmp_path / "r.db") as db:
        run = db.load_run(db.list_runs()["run_id"][0])
    assert run.config["audit"].startswith("point-in-time: ok")


def test_pitgrid_check_exits_1_on_a_leak(tmp_path):
    import sys
    from pathlib import Path

    (tmp_path / "leaky.py").write_text(
        "from strategies_for_tests import CentredAverage as Leaky\n")
    sys.path.insert(0, str(Path(__file__).parent))
    config = tmp_path / "run.toml"
    config.write_text(CONFIG.format(name="leaky:Leaky", db=tmp_path / "r.db", reports=tmp_path / "rep"))
    out = runner.invoke(app, ["check", str(config)])
    assert out.exit_code == 1, out.output
    assert "LEAK" in out.output and "reads data after t" in " ".join(out.output.split())


def test_assert_causal_passes_clean_strategies_and_fails_a_leak():
    assert_causal(CrossSectionalMomentum(lookback=10, top=2, every=5, universe="u"), max_examples=3)
    assert_causal(EventDriven(field="sentiment"), max_examples=2, event_fields=("sentiment",))
    with pytest.raises(AssertionError, match="LEAK"):
        assert_causal(CentredAverage(), max_examples=2)
