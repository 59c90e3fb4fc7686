"""Parameter grids: shared features, the parameter axis inside the compiled loop, chunks sized to
a memory budget, streaming metrics, Dask scale-out, progress, cancellation, checkpoint and resume.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from collections.abc import Mapping, Sequence
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
    sizing parameters become the compiled loop's parameter axis. Parameter sets run
    in chunks sized to ``memory_budget_mb``; metrics stream out per chunk, and only
    the ``keep`` best sets by ``by`` keep their equity curves.

    ``client`` (a ``dask.distributed.Client``, or a scheduler address) or
    ``n_workers > 1`` (a loopback ``LocalCluster``) spreads chunks over workers,
    which open the market's zarr store by path. ``checkpoint`` names a directory
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
    plan = _plan(variants, config, memory_budget_mb, len(as_market(market).time),
                 len(as_market(market).symbols))
    store = _resolve_store(market, client, n_workers, checkpoint)
    if store is None:  # workers of a Dask run read the store on their own machines
        check_grid(as_market(market), resolve_settings(variants[0], config)[0], variants,
                   chunk_sets=max(map(len, plan)), budget_mb=memory_budget_mb)
    window = (None if start is None else str(start), None if end is None else str(end))
    ckpt = (_Checkpoint(checkpoint, plan, strategy, settings, as_market(market), window)
            if checkpoint else None)
    done = ckpt.load(resume) if ckpt else {}

    partial = False
    started = time.monotonic()
    todo = [i for i in range(len(plan)) if i not in done]
    with _progress(progress, len(variants), sum(len(plan[i]) for i in done)) as bar:
        try:
            if store is not None:
                results = _run_dask(client, n_workers, store, plan, todo, config, keep, by, window,
                                    stops)
            else:
                mk = as_market(market).load()
                results = ((i, run_chunk(mk, plan[i], config, keep, by, window, stops)) for i in todo)
            for i, chunk in results:
                done[i] = chunk
                bar(len(plan[i]))
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
            if ckpt:
                ckpt.flush()
    partial = partial or len(done) < len(plan)
    from tqdm.auto import tqdm

    # the table, curves and overfitting statistics take seconds for large grids: say so
    with tqdm(total=1, desc="grid: table and overfitting", unit="step",
              disable=None if progress else True) as tail:
        result = _assemble(done, plan, settings, axes, names, keep, by, partial,
                           {"chunks": len(plan), "seconds": time.monotonic() - started},
                           _window_times(as_market(market).time, window))
        tail.update()
    return result


def _window_times(times: np.ndarray, window: tuple[Any, Any]) -> np.ndarray:
    first, last = bar_window(times, *window)
    return times[first: last + 1]


# ---------------------------------------------------------------------- planning
def _plan(variants: list[Strategy], config: Any, budget_mb: float, T: int, S: int
          ) -> list[list[tuple[int, Strategy]]]:
    """Chunks of (index, variant): same settings (but size value) per chunk, sized to the budget."""
    groups: dict[str, list[tuple[int, Strategy]]] = {}
    for i, v in enumerate(variants):
        cfg, _ = resolve_settings(v, config)
        groups.setdefault(json.dumps(cfg.to_dict(), sort_keys=True, default=str), []).append((i, v))
    # per parameter set: equity and exposures (3 x T floats) plus state, plus its intents
    # when the strategy has no shared bank (two bool or one float array)
    # one set of intents serves every set when only stop levels vary
    shared_bank = hasattr(variants[0], "grid_bank") or all(v == variants[0] for v in variants)
    per_param = 3 * T * 8 + 18 * S * 8 + (0 if shared_bank else T * S * 8)
    size = max(1, int(budget_mb * 2**20 // per_param))
    chunks = []
    for members in groups.values():
        chunks.extend(members[k:k + size] for k in range(0, len(members), size))
    return chunks


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
              stops: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """One compiled pass over a chunk of parameter sets; metrics and the chunk's best curves.
    ``window`` is ``(start, end)``: nothing after ``end`` is read, nothing before ``start`` trades.
    ``stops`` maps a set's index to its stop levels (``sl_stop``, ...), which ride on the
    parameter axis; sets that differ only by them share one set of intents."""
    start, end = window
    if end is not None:
        market = market.truncate(end)
    variants = [v for _, v in chunk]
    cfg, _ = resolve_settings(variants[0], config)
    size_value = [resolve_settings(v, config)[1] for v in variants]
    sv = None if cfg.size == "all" else np.array(size_value, dtype=np.float64)
    run = {**cfg.to_dict(), **_stop_vectors(chunk, cfg, stops)}
    data = FeatureData(market)
    bank_fn = getattr(variants[0], "grid_bank", None)
    plan = bank_fn(data, variants) if bank_fn is not None else None
    if plan is not None:
        res = simulate(market, cross=plan, size_value=sv, keep="equity", record_trades=False,
                       start=start, **run)
    else:
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


def _assemble(done: dict[int, dict[str, Any]], plan: list, settings: list[dict[str, Any]],
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


# ---------------------------------------------------------------------- scale-out
def _resolve_store(market: Any, client: Any, n_workers: int, checkpoint: Any) -> str | None:
    """The store path workers open, or None for an in-process run."""
    if client is None and n_workers <= 1:
        return None
    if isinstance(market, (str, Path)):
        return str(market)
    path = getattr(market, "store_path", None)
    if path is None:
        raise ValueError("a grid on Dask needs the market as a store: pass its path, or a market "
                         "from pitgrid.open_market (workers read the store, not pickled arrays)")
    return str(path)


def _run_dask(client: Any, n_workers: int, store: str, plan: list, todo: list[int], config: Any,
              keep: int, by: str, window: tuple[Any, Any], stops: dict[int, dict[str, Any]] | None):
    """Yield (chunk index, result) as workers finish; a local cluster binds to loopback only."""
    from dask.distributed import Client, LocalCluster, as_completed

    owned = []
    if client is None:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
        owned = [client, cluster]
    elif isinstance(client, str):
        client = Client(client)
        owned = [client]
    futures = {client.submit(_chunk_task, store, plan[i], config, keep, by, window, stops,
                             pure=False): i for i in todo}
    try:
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
    finally:
        for fut in futures:
            fut.cancel()
        for obj in owned:
            obj.close()


_WORKER_MARKETS: dict[str, MarketData] = {}


def _chunk_task(store: str, chunk: list, config: Any, keep: int, by: str,
                window: tuple[Any, Any], stops: dict[int, dict[str, Any]] | None) -> dict[str, Any]:
    from pitgrid.data.market import open_market

    if store not in _WORKER_MARKETS:
        _WORKER_MARKETS[store] = open_market(store).load()
    return run_chunk(_WORKER_MARKETS[store], chunk, config, keep, by, window, stops)


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
