"""Models from a config: [model] names a bundle read from the config's folder, the run stores
the weights' SHA-256, and every user error is one line. examples/model is run end to end."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import textwrap
import tomllib
from pathlib import Path

import pytest

import pitgrid as pg
from pitgrid.demo import to_toml, write_long_csv
from pitgrid.models import ModelStrategy
from pitgrid.results import ResultsDB
from pitgrid.runconfig import RunConfigError, load_run_config, run_backtest, run_grid

torch = pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "model"
TRAIN_END, TRADE_START = "2011-06-30", "2011-07-01"


def example_module():
    spec = importlib.util.spec_from_file_location("train_model", EXAMPLE / "train_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A folder as the example's README leaves it: a store and a trained bundle beside the config."""
    root = tmp_path_factory.mktemp("project")
    csv = write_long_csv(600, 15, 4, root / "prices.csv")
    pg.ingest(csv, root / "prices.pitgrid", progress=False)
    example_module().train(pg.open_market(root / "prices.pitgrid"), root / "mlp_bundle",
                           train_end=TRAIN_END, epochs=5, threshold=0.36)
    return root


def example_config(root: Path, **changes) -> Path:
    """examples/model/model_run.toml, moved to ``root`` and pointed at the synthetic data's dates."""
    sections = tomllib.loads((EXAMPLE / "model_run.toml").read_text())
    sections["data"]["start"] = TRADE_START
    del sections["universe"]  # synthetic data has no membership
    sections["outputs"] = {"db": "runs.db", "reports": "html"}
    for section, body in changes.items():
        if body is None:
            sections.pop(section, None)
        else:
            sections[section] = body
    path = root / "configs" / "model_run.toml"
    path.parent.mkdir(exist_ok=True)
    text = to_toml(sections).replace('store = "prices.pitgrid"', 'store = "../prices.pitgrid"')
    path.write_text(text.replace('bundle = "mlp_bundle"', 'bundle = "../mlp_bundle"'))
    return path


def test_the_example_trains_and_backtests_from_its_config(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anywhere but the config's folder: paths are the config's
    cfg = load_run_config(example_config(project))
    assert cfg.strategy_class is ModelStrategy and cfg.strategy_name == "ModelStrategy"
    assert cfg.model_bundle == (project / "mlp_bundle").resolve()
    assert cfg.strategy().bundle == str((project / "mlp_bundle").resolve())
    outcome = run_backtest(cfg)
    digest = hashlib.sha256((project / "mlp_bundle" / "model.pt").read_bytes()).hexdigest()
    with ResultsDB(outcome.db) as db:
        stored = db.load_run(outcome.run_id)
    assert stored.config["model_sha256"] == digest
    assert stored.metrics["trades"][0] > 0
    assert outcome.report.exists()


def test_strategy_model_with_a_weight_axis_is_a_grid_that_stores_the_hash(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_run_config(example_config(
        project, strategy={"name": "model", "params": {"weight": [0.02, 0.05]}}))
    assert cfg.is_grid and cfg.axes() == {"weight": [0.02, 0.05]}
    outcome = run_grid(cfg, progress=False)
    with ResultsDB(outcome.db) as db:
        stored = db.load_run(outcome.run_id)
    assert stored.config["model_sha256"] == pg.ModelBundle.load(project / "mlp_bundle").weights_sha256


def error(path: Path) -> RunConfigError:
    with pytest.raises(RunConfigError) as info:
        load_run_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return info.value


def test_model_config_errors_name_the_key_in_one_line(project, tmp_path):
    err = error(example_config(project, model={"bundle": "../no_such_bundle"}))
    assert err.key == "model.bundle" and "does not exist" in str(err)
    assert f"relative paths are read from {project / 'configs'}" in str(err)

    broken = tmp_path / "broken"
    shutil.copytree(project / "mlp_bundle", broken)
    meta = json.loads((broken / "metadata.json").read_text())
    meta["lookback"] = 0
    (broken / "metadata.json").write_text(json.dumps(meta))
    err = error(example_config(project, model={"bundle": str(broken)}))
    assert err.key == "model.bundle" and "metadata.json: lookback: must be a positive integer" in str(err)

    shutil.copy(project / "mlp_bundle" / "metadata.json", broken / "metadata.json")
    (broken / "model.pt").unlink()
    assert "model.pt: missing" in str(error(example_config(project, model={"bundle": str(broken)})))

    err = error(example_config(project, model={}))
    assert err.key == "model.bundle" and "required" in str(err)
    err = error(example_config(project, strategy={"name": "ma_cross"}))
    assert err.key == "model" and 'name = "model"' in str(err)
    err = error(example_config(project, model=None, strategy={"name": "model"}))
    assert err.key == "model.bundle" and "reads a model bundle" in str(err)
    err = error(example_config(project, strategy={"name": "model", "params": {"bundle": "x"}}))
    assert err.key == "strategy.params.bundle" and "[model] bundle" in str(err)
    err = error(example_config(project, strategy={"name": "model", "params": {"weigth": 0.1}}))
    assert err.key == "strategy.params.weigth" and "did you mean 'weight'?" in str(err)


def test_cli_prints_a_missing_bundle_as_one_line(project):
    from typer.testing import CliRunner

    from pitgrid.cli import app

    path = example_config(project, model={"bundle": "../no_such_bundle"})
    result = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "model.bundle" in lines[0] and "Traceback" not in result.output


def test_cli_prints_a_feature_the_data_lack_as_one_line(project, tmp_path):
    from typer.testing import CliRunner

    from pitgrid.cli import app

    other = tmp_path / "vwap_bundle"
    shutil.copytree(project / "mlp_bundle", other)
    meta = json.loads((other / "metadata.json").read_text())
    meta["features"][0]["field"] = "vwap"
    (other / "metadata.json").write_text(json.dumps(meta))
    path = example_config(project, model={"bundle": str(other)})
    result = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "model.bundle: " in lines[0] and str(path) in lines[0]
    assert f"{other / 'metadata.json'}: features[0] ('ret_1').field: the data has no field 'vwap'" in lines[0]


def test_a_sleeve_bundle_is_read_from_the_config_folder(project, tmp_path):
    path = tmp_path / "book.toml"
    path.write_text(textwrap.dedent(f"""
        [data]
        store = "{project / 'prices.pitgrid'}"
        [portfolio]
        sleeves = [{{ strategy = "model", share = 0.5, params = {{ bundle = "mlp" }} }},
                   {{ strategy = "ma_cross", share = 0.5 }}]
    """))
    shutil.copytree(project / "mlp_bundle", tmp_path / "mlp")
    cfg = load_run_config(path)
    assert cfg.portfolio["sleeves"][0].strategy.bundle == str((tmp_path / "mlp").resolve())


@pytest.mark.slow
def test_the_example_on_the_real_sample(real_market, tmp_path, monkeypatch):
    """The example as its docstring runs it: trained up to 2012, traded from 2013 in the S&P 500."""
    (tmp_path / "prices.pitgrid").symlink_to(real_market.store_path)
    example_module().train(real_market, tmp_path / "mlp_bundle", train_end="2012-12-31")
    sections = tomllib.loads((EXAMPLE / "model_run.toml").read_text())
    sections["outputs"] = {"db": "runs.db", "reports": "html"}
    path = tmp_path / "model_run.toml"
    path.write_text(to_toml(sections))
    monkeypatch.chdir(tmp_path.parent)
    outcome = run_backtest(load_run_config(path), real_market)
    with ResultsDB(outcome.db) as db:
        stored = db.load_run(outcome.run_id)
    assert stored.config["model_sha256"] == pg.ModelBundle.load(tmp_path / "mlp_bundle").weights_sha256
    assert stored.metrics["trades"][0] > 100
    assert str(stored.trades["time"].min()) >= "2013-01-02"
    # a sensible run, not a broken one: it stays solvent and its drawdown is not a wipe-out
    assert stored.metrics["max_drawdown"][0] > -0.6
