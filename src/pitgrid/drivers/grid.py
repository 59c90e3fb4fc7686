"""Parameter grids: shared features, the parameter axis inside the compiled loop, chunks sized to
a memory budget, streaming metrics, Dask scale-out, progress, cancellation, checkpoint and resume.

The chunks are cut by :mod:`pitgrid.drivers.grid_plan`, the feature bank is computed once by
:mod:`pitgrid.drivers.grid_bank`, and :mod:`pitgrid.drivers.grid_dask` runs both on workers.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import xarray as xr

from pitgrid.cycle.data import FeatureData
from pitgrid.cycle.strategy import Strategy
from pitgrid.data.market import MarketData
from pitgrid.drivers.common import as_market, decide, resolve_settings
from pitgrid.drivers.grid_bank import Bank, scratch_folder
from pitgrid.drivers.grid_dask import connect, run_dask, store_of
from pitgrid.drivers.grid_plan import GridPlan, plan_grid
from pitgrid.engine.config import SimConfig
from pitgrid.engine.memory import check_grid
from pitgrid.engine.overfitting import Overfitting, block_moments, overfitting
from pitgrid.engine.orders import STOP_SETTINGS
from pitgrid.engine.simulate import bar_window, simulate

_CHECKPOINT_FORMAT = 2  # 2: chunks keep their sets' block moments (overfitting statistics)
OVERFITTING_BLOCKS = 16


@dataclass
class GridResult:
    """Per-parameter-set metrics, and equity curves of the sets that were kept.

    ``table`` (polars) has one row per parameter set: its parameters, then every
    metric of the core. ``metrics`` is the same as an xarray Dataset with one
    dimension per parameter for a product grid (``param`` for a list). ``equity``
    holds the kept curves (dims ``param, time``). ``partial`` is true when the run
    was cancelled before every set ran; the rows that ran are exact. ``overfitting``
    says how much of the best Sharpe ratio is selection: the deflated Sharpe ratio of
    the best set given every set tried, and the probability of backtest overfitting by
    combinatorially symmetric cross-validation over 16 blocks of bars
    (:mod:`pitgrid.engine.overfitting`).
    """

    table: pl.DataFrame
    metrics: xr.Dataset
    equity: xr.DataArray | None
    params: list[dict[str, Any]]
    partial: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    overfitting: Overfitting | None = None

    def best(self, metric: str = "sharpe", n: int = 5) -> pl.DataFrame:
        return self.table.sort(metric, descending=True, nulls_last=True).head(n)

    def plot(self, kind: str = "heatmap", *, metric: str = "sharpe",
             axes: Sequence[str] | None = None) -> Any:
        """A plotly figure: ``kind`` "heatmap" (``metric`` over two ``axes``, the other
        parameters in a dropdown), "equity" or "drawdown" (the kept curves)."""
        from pitgrid.results.display import plot_grid

        return plot_grid(self, kind, metric=metric, axes=axes)

    def _repr_html_(self) -> str:
        from pitgrid.results.display import grid_html

        return grid_html(self)


def expand_params(params: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]
                  ) -> tuple[list[dict[str, Any]], dict[str, list[Any]] | None]:
    """A product of lists (dict) or an explicit list of settings -> (settings, product axes)."""
    if isinstance(params, Mapping):
        axes = {k: list(v) if isinstance(v, (list, tuple, range, np.ndarray)) else [v]
                for k, v in params.items()}
        if not axes or any(len(v) == 0 for v in axes.values()):
            raise ValueError(f"params needs at least one value per parameter, got {params!r}")
        names = list(axes)
        return [dict(zip(names, combo)) for combo in itertools.product(*axes.values())], axes
    settings = [dict(p) for p in params]
    if not settings:
        raise ValueError("params is an empty list")
    return settings, None


def grid(
    market: MarketData | xr.Dataset,
    strategy: Strategy,
    params: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    *,
    config: SimConfig | dict[str, Any] | None = None,
    keep: int = 0,
    by: str = "sharpe",
    memory_budget_mb: float = 256.0,
    client: Any = None,
    n_workers: int = 1,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    checkpoint_every_s: float = 0.0,
    progress: bool = True,
    cancel: threading.Event | None = None,
    start: Any = None,
    end: Any = None,
) -> GridResult:
    """Run ``strategy`` for every parameter setting in ``params`` in as few compiled passes as fit.

    Features are computed once per distinct feature setting and shared; signal and
    sizing parameters become the compiled loop's parameter axis. A strategy with a
    feature bank (``grid_bank_keys``/``grid_bank_row``, e.g. the moving-average cross)
    has each distinct row computed once for the whole grid, before any chunk.
    ``memory_budget_mb`` covers what grows with the grid, the bank included: chunks
    are cut so that the bank rows held and the chunk's sets fit (the bank stays in
    memory when it fits whole, else in a scratch file each chunk maps, reading only
    its rows), so peak memory is flat in the number of sets and of distinct rows.
    Metrics stream out per chunk, and only the ``keep`` best sets by ``by`` keep
    their equity curves.

    ``client`` (a ``dask.distributed.Client``, or a scheduler address) or
    ``n_workers > 1`` (a loopback ``LocalCluster``) spreads chunks over workers, at
    least two chunks per worker thread. Workers open the market's zarr store by path
    and fingerprint (a store rewritten at the same path is opened afresh), read only
    the fields they use, and map the bank from a scratch folder beside the store
    (which must be writable and shared when workers run on other machines); results
    equal the one-process grid bit for bit. ``checkpoint`` names a directory
    where finished chunks are written (npz and parquet, no pickle); ``resume=True``
    skips the chunks found there. Ctrl-C (or ``cancel.set()``) stops between chunks
    and returns what ran, flagged ``partial``. ``start`` and ``end`` bound the runs as
    in :func:`pitgrid.backtest`: features warm up before ``start``, metrics cover
    ``start..end``.

    Example:
        >>> import pitgrid as pg
        >>> from pitgrid.strategies import MovingAverageCross
        >>> market = pg.MarketData(pg.synthetic_prices(300, 5, seed=0))
        >>> g = pg.grid(market, MovingAverageCross(), {"fast": [5, 10], "slow": [30, 60]},
        ...             config={"fill": "close"}, progress=False)
        >>> g.table.height, g.metrics["sharpe"].dims
        (4, ('fast', 'slow'))
    """
    settings, axes = expand_params(params)
    names = sorted({k for s in settings for k in s})
    fields = {f.name for f in dataclasses.fields(strategy)}
    unknown = sorted(set(names) - fields - set(STOP_SETTINGS))
    if unknown:
        raise ValueError(f"{strategy.name} has no parameter(s) {unknown} (nor are they stop "
                         f"settings: {', '.join(STOP_SETTINGS)})")
    variants = [dataclasses.replace(strategy, **{k: v for k, v in s.items() if k in fields})
                for s in settings]
    # stop levels that are not the strategy's own parameters ride on the parameter axis
    stops = {i: {k: v for k, v in s.items() if k not in fields} for i, s in enumerate(settings)}
    stops = {i: v for i, v in stops.items() if v} or None
    job = _Job(as_market(market), variants, config, keep, by, window_of(start, end), stops)
    if client is None and n_workers <= 1:
        plan = plan_grid(variants, config, memory_budget_mb, *job.shape)
        check_grid(job.market, resolve_settings(variants[0], config)[0], variants,
                   chunk_sets=max(map(len, plan.chunks)), budget_mb=memory_budget_mb,
                   bank_rows=plan.held_rows() if plan.keys else None)
        return _run(job, plan, functools.partial(_chunks_here, job, plan), strategy, settings, axes,
                    names, checkpoint, resume, checkpoint_every_s, progress, cancel)
    store = store_of(market)
    with connect(client, n_workers) as (dask_client, threads):
        # two chunks per worker thread, so a slow chunk does not leave the other workers idle
        plan = plan_grid(variants, config, memory_budget_mb, *job.shape, min_chunks=2 * threads)
        runner = functools.partial(_chunks_on_dask, job, plan, dask_client, threads, store)
        return _run(job, plan, runner, strategy, settings, axes, names, checkpoint, resume,
                    checkpoint_every_s, progress, cancel)


def window_of(start: Any, end: Any) -> tuple[Any, Any]:
    """``(start, end)`` as a grid's chunks take them: strings, or None for the data's ends."""
    return (None if start is None else str(start), None if end is None else str(end))


def window_market(market: MarketData, window: tuple[Any, Any]) -> MarketData:
    """What runs ending at ``window``'s end may read: nothing after it."""
    return market if window[1] is None else market.truncate(window[1])


@dataclass(frozen=True)
class _Job:
    """What every chunk of one grid shares."""

    market: MarketData
    variants: list[Strategy]
    config: Any
    keep: int
    by: str
    window: tuple[Any, Any]
    stops: dict[int, dict[str, Any]] | None

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.market.time), len(self.market.symbols)

    @property
    def chunk_args(self) -> tuple:
        """``run_chunk``'s arguments after the market and the chunk."""
        return self.config, self.keep, self.by, self.window, self.stops

    def bank_shape(self, market: MarketData) -> tuple[int, int]:
        return len(window_market(market, self.window).time), len(market.symbols)

    def bank_rows(self, plan: GridPlan, bank: Bank, todo: list[int]) -> list[int]:
        """The bank rows the chunks still to run read: what is computed (once)."""
        return sorted({bank.index[k] for i in todo for k in plan.rows(plan.chunks[i])})


def _chunks_here(job: _Job, plan: GridPlan, todo: list[int]
                 ) -> Iterator[tuple[int, dict[str, Any]]]:
    """The chunks in this process, one after another, after the bank: in memory when the plan
    holds it whole, else in a scratch file each chunk maps."""
    market = job.market.load()
    with contextlib.ExitStack() as stack:
        bank = None
        if plan.keys:
            shape = job.bank_shape(market)
            bank = (Bank.in_memory(plan.keys, shape) if plan.resident else
                    Bank.in_file(plan.keys, shape, stack.enter_context(scratch_folder(None))))
            bank.fill(window_market(market, job.window), job.variants[0],
                      job.bank_rows(plan, bank, todo))
        for i in todo:
            yield i, run_chunk(market, plan.chunks[i], *job.chunk_args,
                               bank=None if bank is None else
                               (bank, [plan.set_keys[j] for j, _ in plan.chunks[i]]))


def _chunks_on_dask(job: _Job, plan: GridPlan, client: Any, threads: int, store: str,
                    todo: list[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The chunks on Dask workers; the bank in a scratch file beside the store."""
    with scratch_folder(store) if plan.keys else contextlib.nullcontext() as folder:
        bank = Bank.in_file(plan.keys, job.bank_shape(job.market), folder) if plan.keys else None
        rows = job.bank_rows(plan, bank, todo) if bank is not None else []
        yield from run_dask(client, threads, store, job.market.fingerprint(), plan, todo, bank,
                            rows, job.variants[0], job.chunk_args)


def _run(job: _Job, plan: GridPlan, runner: Any, strategy: Strategy,
         settings: list[dict[str, Any]], axes: dict[str, list[Any]] | None, names: list[str],
         checkpoint: Any, resume: bool, checkpoint_every_s: float, progress: bool,
         cancel: threading.Event | None) -> GridResult:
    """Run the chunks not done yet (checkpoints, progress, cancellation), then assemble."""
    if checkpoint and resume:
        # a run resumed on other workers (or none) keeps the chunks its checkpoint has
        saved = _Checkpoint.saved_chunks(checkpoint)
        if saved is not None and sorted(i for c in saved for i in c) == list(range(len(settings))):
            plan = dataclasses.replace(plan, chunks=[[(i, job.variants[i]) for i in c]
                                                     for c in saved])
    chunks = plan.chunks
    ckpt = (_Checkpoint(checkpoint, chunks, strategy, settings, job.market, job.window)
            if checkpoint else None)
    done = ckpt.load(resume) if ckpt else {}
    partial = False
    started = time.monotonic()
    todo = [i for i in range(len(chunks)) if i not in done]
    with _progress(progress, len(settings), sum(len(chunks[i]) for i in done)) as bar:
        results = runner(todo)
        try:
            for i, chunk in results:
                done[i] = chunk
                bar(len(chunks[i]))
                if ckpt and time.monotonic() - ckpt.last_write >= checkpoint_every_s:
                    ckpt.write(i, chunk)
                elif ckpt:
                    ckpt.pending[i] = chunk
                if cancel is not None and cancel.is_set():
                    partial = True
                    break
        except KeyboardInterrupt:
            partial = True
        finally:
            results.close()
            if ckpt:
                ckpt.flush()
    partial = partial or len(done) < len(chunks)
    from tqdm.auto import tqdm

    # the table, curves and overfitting statistics take seconds for large grids: say so
    with tqdm(total=1, desc="grid: table and overfitting", unit="step",
              disable=None if progress else True) as tail:
        result = _assemble(done, settings, axes, names, job.keep, job.by, partial,
                           {"chunks": len(chunks), "seconds": time.monotonic() - started},
                           _window_times(job.market.time, job.window))
        tail.update()
    return result


def _window_times(times: np.ndarray, window: tuple[Any, Any]) -> np.ndarray:
    first, last = bar_window(times, *window)
    return times[first: last + 1]


def _stop_vectors(chunk: list[tuple[int, Strategy]], cfg: SimConfig,
                  stops: dict[int, dict[str, Any]] | None) -> dict[str, np.ndarray]:
    """Per-set stop levels of a chunk as ``(param,)`` vectors: the core's parameter axis."""
    if not stops or not any(i in stops for i, _ in chunk):
        return {}
    sets = [stops.get(i, {}) for i, _ in chunk]
    return {name: np.array([s.get(name, getattr(cfg, name)) for s in sets], dtype=np.float64)
            for name in STOP_SETTINGS if any(name in s for s in sets)}


def run_chunk(market: MarketData, chunk: list[tuple[int, Strategy]], config: Any, keep: int, by: str,
              window: tuple[Any, Any] = (None, None),
              stops: dict[int, dict[str, Any]] | None = None,
              bank: tuple[Bank, list[tuple[Any, ...]]] | None = None) -> dict[str, Any]:
    """One compiled pass over a chunk of parameter sets; metrics and the chunk's best curves.
    ``window`` is ``(start, end)``: nothing after ``end`` is read, nothing before ``start`` trades.
    ``stops`` maps a set's index to its stop levels (``sl_stop``, ...), which ride on the
    parameter axis; sets that differ only by them share one set of intents. ``bank`` is the
    grid's feature bank, computed beforehand, and the chunk's sets' rows in it: the core's
    cross rule reads them; without it every set decides its own intents."""
    start, _ = window
    market = window_market(market, window)
    variants = [v for _, v in chunk]
    cfg, _ = resolve_settings(variants[0], config)
    size_value = [resolve_settings(v, config)[1] for v in variants]
    sv = None if cfg.size == "all" else np.array(size_value, dtype=np.float64)
    run = {**cfg.to_dict(), **_stop_vectors(chunk, cfg, stops)}
    if bank is not None:
        rows, set_keys = bank
        fast, slow = rows.indices(set_keys)
        with rows.open() as values:
            res = simulate(market, cross=(values, fast, slow), size_value=sv, keep="equity",
                           record_trades=False, start=start, **run)
    else:
        data = FeatureData(market)
        if all(v == variants[0] for v in variants):
            intents = [decide(market, variants[0], data)]
        else:
            intents = [decide(market, v, data) for v in variants]

        def stack(name: str) -> np.ndarray | None:
            rows = [getattr(x, name) for x in intents]
            return None if rows[0] is None else (rows[0] if len(rows) == 1 else np.stack(rows))

        orders = intents[0].orders or {}
        if len(intents) > 1 and orders:
            orders = {k: np.stack([x.orders[k] for x in intents]) for k in orders}
        res = simulate(market, entries=stack("entries"), exits=stack("exits"),
                       weights=stack("weights"), short_entries=stack("short_entries"),
                       short_exits=stack("short_exits"), size_value=sv, keep="equity",
                       record_trades=False, start=start, **{**run, **orders})
    metrics = res.metrics.drop("param").with_columns(pl.Series("index", [i for i, _ in chunk]))
    equity = np.asarray(res.equity.values).reshape(len(chunk), -1)
    top = _top(metrics[by].to_numpy(), keep)
    prev = np.concatenate([np.full((len(chunk), 1), cfg.init_cash), equity[:, :-1]], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        returns = equity / prev - 1.0
    return {"metrics": metrics, "index": np.array([i for i, _ in chunk])[top], "equity": equity[top],
            "moments": block_moments(returns, OVERFITTING_BLOCKS)}


def _top(values: np.ndarray, k: int) -> np.ndarray:
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(np.where(np.isfinite(values), -values, np.inf), kind="stable")
    return np.sort(order[:k])


def _assemble(done: dict[int, dict[str, Any]], settings: list[dict[str, Any]],
              axes: dict[str, list[Any]] | None, names: list[str], keep: int, by: str,
              partial: bool, info: dict[str, Any], times: np.ndarray) -> GridResult:
    parts = [done[i] for i in sorted(done)]
    if parts:
        metrics = pl.concat([p["metrics"] for p in parts]).sort("index")
    else:
        metrics = pl.DataFrame({"index": pl.Series([], dtype=pl.Int64)})
    index = metrics["index"].to_numpy()
    param_cols = {n: [settings[i].get(n) for i in index] for n in names}
    table = pl.DataFrame(param_cols).hstack(metrics.drop("index")) if len(index) else pl.DataFrame(param_cols)
    metric_names = [c for c in metrics.columns if c != "index"]
    if axes is not None and not partial:
        shape = [len(v) for v in axes.values()]
        ds = xr.Dataset({m: (list(axes), metrics[m].to_numpy().reshape(shape)) for m in metric_names},
                        coords={k: np.asarray(v) for k, v in axes.items()})
    else:
        ds = xr.Dataset({m: ("param", metrics[m].to_numpy()) for m in metric_names},
                        coords={"param": index, **{n: ("param", np.asarray(param_cols[n])) for n in names}})
    equity = None
    if keep > 0 and parts:
        cand_idx = np.concatenate([p["index"] for p in parts])
        cand_eq = np.concatenate([p["equity"] for p in parts])
        values = metrics.filter(pl.col("index").is_in(cand_idx.tolist())).sort("index")
        by_index = dict(zip(values["index"].to_list(), values[by].to_list()))
        score = np.array([by_index[i] for i in cand_idx], dtype=np.float64)
        top = _top(score, keep)
        order = np.argsort(cand_idx[top])
        sel = top[order]
        equity = xr.DataArray(cand_eq[sel], dims=("param", "time"),
                              coords={"param": cand_idx[sel], "time": times,
                                      **{n: ("param", [settings[i].get(n) for i in cand_idx[sel]]) for n in names}})
    stats = None
    if parts and len(index) > 1:
        order = np.argsort(np.concatenate([p["metrics"]["index"].to_numpy() for p in parts]), kind="stable")
        stats = overfitting(np.concatenate([p["moments"] for p in parts])[order])
    return GridResult(table=table, metrics=ds, equity=equity,
                      params=[settings[i] for i in index], partial=partial, info=info,
                      overfitting=stats)


# ---------------------------------------------------------------------- checkpoints
class _Checkpoint:
    """Finished chunks on disk: ``chunk_<i>.npz`` (kept curves) then ``chunk_<i>.parquet`` (metrics).

    The parquet file is renamed into place last, so its presence means the chunk is
    whole; a run killed at any moment leaves only whole chunks.
    """

    def __init__(self, path: str | Path, plan: list, strategy: Strategy,
                 settings: list[dict[str, Any]], market: MarketData,
                 window: tuple[Any, Any]) -> None:
        self.path = Path(path)
        self.last_write = time.monotonic()
        self.pending: dict[int, dict[str, Any]] = {}
        self.manifest = {
            "format": _CHECKPOINT_FORMAT, "strategy": strategy.describe(),
            "settings": settings, "chunks": [[i for i, _ in c] for c in plan],
            "fingerprint": market.fingerprint(), "window": list(window),
        }

    @staticmethod
    def saved_chunks(path: str | Path) -> list[list[int]] | None:
        """The chunks (set indices) of the checkpoint at ``path``, or None when there is none."""
        mpath = Path(path) / "manifest.json"
        return json.loads(mpath.read_text()).get("chunks") if mpath.exists() else None

    def load(self, resume: bool) -> dict[int, dict[str, Any]]:
        mpath = self.path / "manifest.json"
        if mpath.exists():
            if not resume:
                raise FileExistsError(f"checkpoint {self.path} exists: pass resume=True to go on, "
                                      "or remove it to start over")
            saved = json.loads(mpath.read_text())
            mine = json.loads(json.dumps(self.manifest, default=str))
            if saved != mine:
                raise ValueError(f"{mpath}: the checkpoint is for another grid, strategy or data")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(mpath, json.dumps(self.manifest, default=str))
        done = {}
        for i in range(len(self.manifest["chunks"])):
            pq = self.path / f"chunk_{i}.parquet"
            if pq.exists():
                with np.load(self.path / f"chunk_{i}.npz", allow_pickle=False) as z:
                    done[i] = {"metrics": pl.read_parquet(pq), "index": z["index"],
                               "equity": z["equity"], "moments": z["moments"]}
        return done

    def write(self, i: int, chunk: dict[str, Any]) -> None:
        tmp = self.path / f"chunk_{i}.tmp.npz"
        np.savez(tmp, index=chunk["index"], equity=chunk["equity"], moments=chunk["moments"])
        tmp.replace(self.path / f"chunk_{i}.npz")
        tmp = self.path / f"chunk_{i}.tmp.parquet"
        chunk["metrics"].write_parquet(tmp)
        tmp.replace(self.path / f"chunk_{i}.parquet")
        self.pending.pop(i, None)
        self.last_write = time.monotonic()

    def flush(self) -> None:
        for i, chunk in list(self.pending.items()):
            self.write(i, chunk)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# ---------------------------------------------------------------------- progress
class _progress:
    """A progress bar over parameter sets (tqdm: rate and time left); a no-op when disabled."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        self.enabled, self.total, self.done = enabled, total, done

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self.total, initial=self.done, unit="set", desc="grid")
        return self._bar.update

    def __exit__(self, *exc):
        if self.enabled:
            self._bar.close()
        return False
