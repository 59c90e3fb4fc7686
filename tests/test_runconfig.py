"""Run configs: the examples load, and every kind of bad config names its file, key and allowed values."""
import dataclasses
import textwrap
import tomllib
from pathlib import Path

import pytest

import pitgrid as pg
from pitgrid.demo import to_toml, write_long_csv
from pitgrid.runconfig import RunConfigError, load_run_config, run_config_from_dict
from pitgrid.strategies import CrossSectionalMomentum, MovingAverageCross

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SYNTHETIC = 'synthetic = { n_time = 300, n_symbols = 5, seed = 1 }'


def write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def config_error(tmp_path: Path, text: str) -> RunConfigError:
    path = write(tmp_path, text)
    with pytest.raises(RunConfigError) as info:
        load_run_config(path)
    assert str(path) in str(info.value)  # every error names the file
    return info.value


def minimal(**sections: str) -> str:
    """A valid config with extra sections appended as TOML text."""
    base = f'[data]\n{SYNTHETIC}\n[strategy]\nname = "ma_cross"\n'
    return base + "".join(f"[{name}]\n{body}\n" for name, body in sections.items())


def test_examples_load():
    single = load_run_config(EXAMPLES / "ma_cross.toml")
    assert single.strategy_class is MovingAverageCross and not single.is_grid
    assert single.strategy() == MovingAverageCross(fast=10, slow=50)
    assert single.settings["fill"] == "next_open" and single.settings["fees_bps"] == 10.0
    assert single.settings["max_positions"] == 20

    grid = load_run_config(EXAMPLES / "momentum_grid.toml")
    assert grid.strategy_class is CrossSectionalMomentum and grid.is_grid
    assert grid.axes() == {"lookback": [63, 126, 252], "top": [10, 25]}
    assert (grid.keep, grid.by) == (3, "sharpe")
    with pytest.raises(dataclasses.FrozenInstanceError):
        grid.keep = 1


def test_paths_are_read_from_the_config_folder_and_universe_is_checked(tmp_path):
    csv = write_long_csv(40, 3, 0, tmp_path / "prices.csv")
    pg.ingest(csv, tmp_path / "store", progress=False)
    (tmp_path / "configs").mkdir()
    path = write(tmp_path / "configs", """
        [data]
        store = "../store"
        [strategy]
        name = "MovingAverageCross"
        params = { fast = 2, slow = [5, 10] }
        [outputs]
        db = "../out/runs.db"
        reports = "../out/html"
    """)
    cfg = load_run_config(path)
    assert cfg.store == (tmp_path / "store").resolve()
    assert cfg.db == str((tmp_path / "out" / "runs.db").resolve())
    assert cfg.reports == (tmp_path / "out" / "html").resolve()
    assert cfg.open_market().symbols.tolist() == ["S0000", "S0001", "S0002"]
    with pytest.raises(RunConfigError, match=r"universe\.id: 'sp500' is not in the data"):
        dataclasses.replace(cfg, universe="sp500").open_market()


def test_without_outputs_db_a_config_uses_the_default_database_as_the_cli_does(tmp_path,
                                                                               monkeypatch):
    from pitgrid.results.default_db import default_db

    (tmp_path / "project" / "configs").mkdir(parents=True)
    path = write(tmp_path / "project" / "configs", minimal())
    monkeypatch.delenv("PITGRID_DB", raising=False)
    monkeypatch.chdir(tmp_path / "project")
    assert load_run_config(path).db == str(tmp_path / "project" / "pitgrid.db")
    (tmp_path / "project" / "pitgrid.toml").write_text('db = "results/team.db"\n')
    assert load_run_config(path).db == str(tmp_path / "project" / "results" / "team.db")
    monkeypatch.setenv("PITGRID_DB", str(tmp_path / "env.db"))
    assert load_run_config(path).db == str(tmp_path / "env.db") == default_db().location
    # a config that names its database keeps it, read from the config's folder
    named = write(tmp_path / "project" / "configs", minimal(outputs='db = "own.db"'), "own.toml")
    assert load_run_config(named).db == str(tmp_path / "project" / "configs" / "own.db")
    monkeypatch.delenv("PITGRID_DB")
    (tmp_path / "project" / "pitgrid.toml").write_text("db = 3\n")
    with pytest.raises(RunConfigError, match=r"outputs\.db: .*db must be a path"):
        load_run_config(path)


def test_unknown_key_names_the_key_and_suggests_a_close_match(tmp_path):
    err = config_error(tmp_path, minimal(costs="fee_bps = 10"))
    assert err.key == "costs.fee_bps"
    assert "did you mean 'fees_bps'?" in str(err) and "slippage_bps" in str(err)

    err = config_error(tmp_path, minimal(executoin='fill = "close"'))
    assert err.key == "executoin" and "did you mean 'execution'?" in str(err)

    err = config_error(tmp_path, minimal(costs='fill = "close"'))
    assert err.key == "costs.fill" and "belongs in [execution]" in str(err)

    err = config_error(tmp_path, f'[data]\n{SYNTHETIC}\n[strategy]\nname = "ma_cross"\n'
                                 'params = { fats = 5 }\n')
    assert err.key == "strategy.params.fats" and "did you mean 'fast'?" in str(err)


def test_bad_fill_lists_the_allowed_values(tmp_path):
    err = config_error(tmp_path, minimal(execution='fill = "nextopen"'))
    assert err.key == "execution.fill"
    assert "'next_open', 'close'" in str(err) and "did you mean 'next_open'?" in str(err)


@pytest.mark.parametrize("section, body, key, expected", [
    ("costs", 'fees_bps = "ten"', "costs.fees_bps", "expected a number"),
    ("risk", "allow_short = 1", "risk.allow_short", "expected true or false"),
    ("risk", "max_positions = 2.5", "risk.max_positions", "expected a whole number"),
    ("outputs", "keep = -1", "outputs.keep", "whole number >= 0"),
    ("costs", "fees_bps = -3", "costs.fees_bps", "must be a finite number >= 0"),
])
def test_bad_types_and_ranges_name_the_key(tmp_path, section, body, key, expected):
    err = config_error(tmp_path, minimal(**{section: body}))
    assert err.key == key and expected in str(err)


def test_bad_strategy_parameters(tmp_path):
    err = config_error(tmp_path, f'[data]\n{SYNTHETIC}\n[strategy]\nname = "ma_cross"\n'
                                 'params = { fast = [5, true] }\n')
    assert err.key == "strategy.params.fast[1]" and "expected a whole number" in str(err)
    # every grid combination is built up front: one the strategy refuses fails before running
    err = config_error(tmp_path, f'[data]\n{SYNTHETIC}\n[strategy]\nname = "ma_cross"\n'
                                 'params = { fast = [10, 60], slow = 50 }\n')
    assert err.key == "strategy.params" and "fast=60, slow=50" in str(err)


def test_unknown_strategy_lists_the_shipped_ones(tmp_path):
    err = config_error(tmp_path, f'[data]\n{SYNTHETIC}\n[strategy]\nname = "ma_crossover"\n')
    assert err.key == "strategy.name" and "did you mean 'ma_cross'?" in str(err)
    for name in ("rsi", "momentum", "event", "CrossSectionalMomentum", "module:Class"):
        assert name in str(err)
    err = config_error(tmp_path, f'[data]\n{SYNTHETIC}\n[strategy]\nname = "no_such_mod:X"\n')
    assert err.key == "strategy.name" and "cannot import 'no_such_mod'" in str(err)


def test_data_needs_exactly_one_source(tmp_path):
    assert config_error(tmp_path, '[strategy]\nname = "rsi"\n').key == "data"
    err = config_error(tmp_path, '[data]\nstore = "missing"\n[strategy]\nname = "rsi"\n')
    assert err.key == "data.store" and "does not exist" in str(err)
    err = config_error(tmp_path, '[data]\nsynthetic = { n_time = 10 }\n[strategy]\nname = "rsi"\n')
    assert err.key == "data.synthetic.n_symbols"


def test_bad_toml_names_the_file(tmp_path):
    assert "not valid TOML" in str(config_error(tmp_path, "[data\n"))


def test_user_strategy_imports_from_the_config_folder(tmp_path):
    (tmp_path / "my_strats.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass
        from pitgrid.strategies import MovingAverageCross

        @dataclass(frozen=True, kw_only=True)
        class Slow(MovingAverageCross):
            slow: int = 80
    """))
    cfg = load_run_config(write(tmp_path, f'[data]\n{SYNTHETIC}\n[strategy]\nname = "my_strats:Slow"\n'
                                          'params = { fast = [5, 10] }\n'))
    assert cfg.strategy_class.__name__ == "Slow" and cfg.strategy().slow == 80 and cfg.is_grid


def test_to_toml_round_trips_through_the_loader():
    sections = {"data": {"synthetic": {"n_time": 50, "n_symbols": 2}},
                "strategy": {"name": "rsi", "params": {"window": [7, 14], "low": 25.5}},
                "risk": {"allow_short": False, "max_leverage": 1.5}}
    assert tomllib.loads(to_toml(sections)) == sections
    cfg = run_config_from_dict(tomllib.loads(to_toml(sections)))
    assert cfg.axes() == {"window": [7, 14]} and cfg.params["low"] == 25.5


def test_the_package_exports_what_the_cli_and_the_paper_driver_import():
    import pitgrid.runconfig as rc

    for name in ("ALIASES", "RunConfig", "RunConfigError", "RunOutcome", "SyntheticData",
                 "load_run_config", "run_backtest", "run_config_from_dict", "run_grid",
                 "run_walkforward", "stored_params"):
        assert name in rc.__all__ and getattr(rc, name) is not None


def test_a_portfolio_run_stores_one_weights_hash_for_its_model_sleeves(tmp_path):
    import hashlib

    from pitgrid.runconfig import run_backtest

    (tmp_path / "hashed.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass
        from pitgrid.strategies import MovingAverageCross

        @dataclass(frozen=True, kw_only=True)
        class Hashed(MovingAverageCross):
            weights: str = ""

            def describe(self):
                # as ModelStrategy does: the weights' hash beside name and parameters
                extra = {"model_sha256": self.weights} if self.weights else {}
                return {**super().describe(), **extra}
    """))
    a, b = "a" * 64, "b" * 64

    def stored(*weights: str) -> str | None:
        sleeves = ",\n".join(
            f'{{ strategy = "hashed:Hashed", params = {{ fast = {3 + i}, slow = 20, '
            f'weights = "{w}" }}, share = {1 / len(weights)}, name = "s{i}" }}'
            for i, w in enumerate(weights))
        path = write(tmp_path, f'[data]\n{SYNTHETIC}\n[portfolio]\nsleeves = [\n{sleeves}\n]\n'
                               f'[outputs]\ndb = "runs.db"\nreports = "out"\n', "book.toml")
        outcome = run_backtest(load_run_config(path), progress=False)
        with pg.ResultsDB(outcome.db) as rdb:
            run = rdb.load_run(outcome.run_id)
        hashes = [s.get("model_sha256") for s in run.config["sleeves"]]
        assert hashes == [w or None for w in weights]
        return run.model_sha256

    assert stored("", "") is None
    assert stored(a, "", a) == a
    combined = hashlib.sha256(f"{a},{b}".encode()).hexdigest()
    assert stored(b, a, "") == stored(a, "", b, a) == combined
