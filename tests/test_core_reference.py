"""Hold the compiled simulation core (``pitgrid.simulate``) to the reference simulator.

Hypothesis draws small random universes (gaps, delistings, splits, dividends,
zero-volume bars), random signals or target weights, and random settings across
every option of docs/simulation.md; ``pg.simulate`` must agree with
``tests/reference_sim.py``: share counts exactly, cash and equity to 1e-9
relative, trades and unfilled orders one for one.

Setting ``PITGRID_CORE_VS_SELF=1`` routes these tests through a small adapter
that wraps the reference itself in ``pg.simulate``'s interface; it only checks
this harness (conversions, shapes, the comparisons), never the core.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
import xarray as xr
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reference_sim import reference_simulate

INF = float("inf")
NAN = float("nan")
RTOL = 1e-9
ATOL = 1e-6

SETTING_CHOICES: dict[str, list[Any]] = {
    # the first value is the default, so hypothesis shrinks towards it
    "fill": ["next_open", "close"],
    "fees_bps": [0.0, 10.0, 2.5],
    "slippage_bps": [0.0, 5.0],
    "spread_bps": [0.0, 8.0],
    "impact_k": [0.0, 0.02],
    "commission_per_share": [0.0, 0.005],
    "min_commission": [0.0, 1.0],
    "max_participation": [INF, 0.1, 0.5],
    "unfilled": ["drop", "carry"],
    "lot_size": [0.0, 1.0, 10.0],
    "min_order_value": [0.0, 500.0],
    "allow_short": [False, True],
    "max_leverage": [1.0, 1.5, 2.0],
    "borrow_bps": [0.0, 50.0],
    "bars_per_year": [252.0, 365.0],
    "init_cash": [100_000.0, 10_000.0],
    "accounts": ["shared", "per_symbol", "shared"],   # shared twice as often
    # risk gates: mostly off, sometimes on with values small enough to trigger
    "min_bars_between": [0, 0, 0, 2, 4],
    "max_trades_per_bar": [0, 0, 0, 1, 2],
    "max_positions": [0, 0, 0, 1, 2],
    "daily_loss_stop": [0.0, 0.0, 0.0, 0.01, 0.03],
    "max_drawdown_stop": [0.0, 0.0, 0.0, 0.03, 0.1],
    "cooldown_losses": [0, 0, 0, 1, 2],
    "cooldown_bars": [0, 2, 6],
}
SIZE_VALUES = {"all": [NAN], "shares": [10.0, 100.0, 1000.0], "value": [1000.0, 5000.0],
               "percent": [0.1, 0.3, 0.5]}
WEIGHT_CHOICES = [NAN, 0.0, 0.1, 0.25, 0.5, 1.0, -0.25, -0.5]


# ----------------------------------------------------------------------------- the case


@dataclass
class Case:
    open: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    valid: np.ndarray
    split_ratio: np.ndarray | None
    dividend: np.ndarray | None
    delist_bar: np.ndarray
    entries: np.ndarray | None      # (P, T, S)
    exits: np.ndarray | None
    weights: np.ndarray | None
    settings: dict
    param_dim: bool                  # intents carry a "param" dim
    as_xarray: bool                  # intents passed as DataArrays (else numpy)
    # orders beyond the market (tests/test_orders_reference.py): "high"/"low" bars,
    # short signals, stops and order levels, passed as numpy arrays or scalars
    orders: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        """Compact: the settings that differ from the defaults, events as sparse lists."""
        P, T, S = self.shape

        def where(mask, values=None):
            idx = [tuple(int(i) for i in x) for x in np.argwhere(mask)]
            return idx if values is None else [i + (float(values[i]),) for i in idx]

        defaults = {k: v[0] for k, v in SETTING_CHOICES.items()}
        changed = {k: v for k, v in self.settings.items()
                   if k not in defaults or not v == defaults[k]}
        out = [f"Case(P={P}, T={T}, S={S}, param_dim={self.param_dim}, "
               f"as_xarray={self.as_xarray},",
               f"  settings (non-default)={changed},"]
        out += [f"  {name}={getattr(self, name).tolist()}," for name in ("close", "open", "volume")]
        out.append(f"  invalid (t, s)={where(~self.valid)},")
        out.append(f"  delist_bar={self.delist_bar.tolist()},")
        if self.split_ratio is not None:
            out.append(f"  splits (t, s, r)={where(self.split_ratio != 1, self.split_ratio)},")
            out.append(f"  dividends (t, s, d)={where(self.dividend != 0, self.dividend)},")
        if self.weights is not None:
            out.append(f"  weights (p, t, s, w)="
                       f"{where(np.isfinite(self.weights), self.weights)},")
        else:
            out.append(f"  entries (p, t, s)={where(self.entries)},")
            out.append(f"  exits (p, t, s)={where(self.exits)},")
        for name, a in self.orders.items():
            out.append(f"  {name}={np.asarray(a).tolist()},")
        out.append(")")
        return "\n".join(out)

    def _repr_pretty_(self, printer, cycle) -> None:  # hypothesis prints failing cases with this
        printer.text(repr(self))

    @property
    def shape(self):
        intent = self.weights if self.weights is not None else self.entries
        return intent.shape

    def dataset(self) -> xr.Dataset:
        T, S = self.close.shape
        dims = ("time", "symbol")
        data = {
            "open": (dims, self.open),
            "high": (dims, self.orders.get("high", np.fmax(self.open, self.close))),
            "low": (dims, self.orders.get("low", np.fmin(self.open, self.close))),
            "close": (dims, self.close),
            "volume": (dims, self.volume),
            "valid": (dims, self.valid),
        }
        if self.split_ratio is not None:
            data["split_ratio"] = (dims, self.split_ratio)
        if self.dividend is not None:
            data["dividend"] = (dims, self.dividend)
        coords = {"time": pd.bdate_range("2020-01-01", periods=T).values.astype("datetime64[ns]"),
                  "symbol": [f"S{i}" for i in range(S)]}
        return xr.Dataset(data, coords=coords)

    def intents(self, p: int | None = None) -> dict:
        """Intent keywords for simulate: all parameter sets, or set p alone without a param dim."""
        ds = self.dataset()
        out = {}
        for name in ("entries", "exits", "weights"):
            a = getattr(self, name)
            if a is None:
                continue
            if p is not None:
                a, dims = a[p], ("time", "symbol")
            elif self.param_dim:
                dims = ("param", "time", "symbol")
            else:
                a, dims = a[0], ("time", "symbol")
            if self.as_xarray:
                coords = {"time": ds.time, "symbol": ds.symbol}
                if "param" in dims:
                    coords["param"] = np.arange(a.shape[0])
                a = xr.DataArray(a, dims=dims, coords=coords)
            out[name] = a
        for name, a in self.orders.items():
            if name in ("high", "low"):
                continue
            if p is not None and np.ndim(a) == 3:
                a = a[p]
            elif p is not None and np.ndim(a) == 1:
                a = a[p]
            out[name] = a
        return out

    def reference(self) -> dict:
        return reference_simulate(self.open, self.close, self.volume, self.valid,
                                  self.split_ratio, self.dividend, self.delist_bar,
                                  entries=self.entries, exits=self.exits, weights=self.weights,
                                  **self.orders, **self.settings)


# 1/3 and 1-for-20 leave fractions of a lot (cash in lieu) or land within rounding of one
RATIOS = [2.0, 3.0, 0.5, 1.5, 1.0 / 3.0, 0.05]
DIVIDENDS = [0.1, 0.5, 1.0]


@st.composite
def cases(draw, max_T=40, max_S=6, max_P=3, mode=None) -> Case:
    """A random small universe, intents and settings.

    The bars are drawn as a list of rows (one per time step) so that hypothesis can
    shrink a failure by deleting whole bars; every value shrinks towards "nothing
    happens" (flat prices, full volume, valid bars, no action, default settings)."""
    S = draw(st.integers(1, max_S), label="S")
    P = draw(st.integers(1, max_P), label="P")
    if mode is None:
        mode = draw(st.sampled_from(["signals", "weights"]), label="mode")
    sets = {k: draw(st.sampled_from(v), label=k) for k, v in SETTING_CHOICES.items()}
    if mode == "signals":
        sets["size"] = draw(st.sampled_from(list(SIZE_VALUES)), label="size")
        sets["size_value"] = draw(st.sampled_from(SIZE_VALUES[sets["size"]]), label="size_value")
    param_dim = P > 1 or draw(st.booleans(), label="param_dim")
    as_xarray = draw(st.booleans(), label="as_xarray")

    cell = st.tuples(
        st.sampled_from([0.0, 0.05, -0.05, 0.1, -0.1, 0.25, -0.2]),   # close-to-close return
        st.sampled_from([0.0, 0.01, -0.01, 0.03, -0.03]),             # open gap
        st.sampled_from([1e6, 20_000.0, 3_000.0, 0.0, 400.0]),        # volume
        st.integers(0, 30),    # >= 28: a missing bar
        st.integers(0, 100),   # >= 95: a split
        st.integers(0, 100),   # >= 98: a dividend
    )
    intent = (st.tuples(st.booleans(), st.booleans()) if mode == "signals"
              else st.sampled_from(WEIGHT_CHOICES))
    row = st.tuples(st.lists(cell, min_size=S, max_size=S),
                    st.lists(intent, min_size=P * S, max_size=P * S))
    t_min = draw(st.sampled_from([2, 10, 25]), label="t_min")
    rows = draw(st.lists(row, min_size=min(t_min, max_T), max_size=max_T), label="bars")
    T = len(rows)

    base = draw(st.lists(st.sampled_from([10.0, 20.0, 50.0, 8.0, 100.0]), min_size=S,
                         max_size=S), label="base")
    close = np.empty((T, S))
    open_ = np.empty((T, S))
    volume = np.empty((T, S))
    valid = np.ones((T, S), bool)
    split_ratio = np.ones((T, S))
    dividend = np.zeros((T, S))
    prev = np.array(base)
    for t, (cells, _) in enumerate(rows):
        for s, (ret, gap, vol, miss, split, div) in enumerate(cells):
            open_[t, s] = max(round(prev[s] * (1 + gap), 2), 1.0)
            close[t, s] = max(round(prev[s] * (1 + ret), 2), 1.0)
            volume[t, s] = vol
            valid[t, s] = miss < 28
            if split >= 95 and t > 0:
                split_ratio[t, s] = RATIOS[split - 95]
            if div >= 98:
                dividend[t, s] = DIVIDENDS[div - 98]
        prev = close[t].copy()
    # splits: the prices from the ex-date on are divided by the ratio
    for s in range(S):
        close[:, s] /= np.cumprod(split_ratio[:, s])
        open_[:, s] /= np.cumprod(split_ratio[:, s])
    # delistings: the data of a symbol ends early
    for s in range(S):
        end = draw(st.one_of(st.none(), st.integers(1, T - 1)), label=f"end{s}")
        if end is not None:
            valid[end:, s] = False
            split_ratio[end:, s] = 1.0
            dividend[end:, s] = 0.0
    delist_bar = np.full(S, -1, np.int64)
    for s in range(S):
        idx = np.flatnonzero(valid[:, s])
        if len(idx) and idx[-1] < T - 1:
            delist_bar[s] = idx[-1] + 1
    for a in (open_, close, volume):
        a[~valid] = NAN

    entries = exits = weights = None
    raw = [r[1] for r in rows]   # T lists of P*S
    if mode == "signals":
        entries = np.array([[x[0] for x in r] for r in raw], bool).reshape(T, P, S)
        exits = np.array([[x[1] for x in r] for r in raw], bool).reshape(T, P, S)
        entries, exits = entries.transpose(1, 0, 2).copy(), exits.transpose(1, 0, 2).copy()
    else:
        weights = np.array(raw, float).reshape(T, P, S).transpose(1, 0, 2).copy()
    with_actions = draw(st.booleans(), label="actions_in_ds") or \
        bool((split_ratio != 1).any() or (dividend != 0).any())
    return Case(open_, close, volume, valid,
                split_ratio if with_actions else None, dividend if with_actions else None,
                delist_bar, entries, exits, weights, sets, param_dim, as_xarray)


# ----------------------------------------------------------------------------- the core


def simulate(ds: xr.Dataset, **kw):
    """The system under test: ``pg.simulate`` (or the reference adapter, see the module doc)."""
    if os.environ.get("PITGRID_CORE_VS_SELF") == "1":
        return _reference_adapter(ds, **kw)
    import pitgrid as pg

    return pg.simulate(ds, **kw)


def run_core(case: Case, p: int | None = None):
    kw = dict(case.settings)
    if kw.get("size", "all") == "all":
        kw.pop("size_value", None)
    return simulate(case.dataset(), **case.intents(p), delist_bar=case.delist_bar,
                    keep="full", **kw)


# ----------------------------------------------------------------------------- conversions


def _ptx(da: xr.DataArray, last: str, has_param: bool) -> np.ndarray:
    """A result DataArray as a (P, T, X) numpy array, checking its dims."""
    want = ("param", "time", last) if has_param else ("time", last)
    assert set(da.dims) == set(want), f"dims {da.dims}, expected {want}"
    a = np.asarray(da.transpose(*want).values, dtype=float)
    return a if has_param else a[None]


_SIDES = {"buy": 1, "sell": -1, "b": 1, "s": -1}


def _side(x) -> int:
    if isinstance(x, str):
        return _SIDES[x.lower()]
    return 1 if x > 0 else -1


def _reason(x) -> str:
    return str(x).lower().replace(" ", "_").replace("-", "_")


def _order(per_symbol: bool):
    """Sort key: (param, time, account); the order within an account and bar is kept.

    Fills of different per-symbol accounts are independent, so their relative order
    within a bar carries no meaning."""
    return lambda r: (r[1], r[0], r[2] if per_symbol else 0)


def _rows(df: pl.DataFrame, ds: xr.Dataset, cols: list[str], per_symbol: bool) -> list[tuple]:
    """(t, p, s, *cols) per row of a core frame, stably sorted by (p, t, account)."""
    if df.height == 0:
        return []
    times = pd.DatetimeIndex(ds.time.values)
    t_idx = times.get_indexer(pd.DatetimeIndex(df["time"].to_numpy()))
    assert (t_idx >= 0).all(), "trade times not in the dataset"
    symbols = [str(x) for x in ds.symbol.values]
    s_idx = [symbols.index(str(x)) for x in df["symbol"].to_list()]
    p_idx = df["param"].to_list() if "param" in df.columns else [0] * df.height
    rows = [(int(t), int(p), int(s), *vals) for t, p, s, vals in
            zip(t_idx, p_idx, s_idx, zip(*(df[c].to_list() for c in cols)))]
    return sorted(rows, key=_order(per_symbol))


def _close(a, b) -> bool:
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-9)


def _first_diff(a: np.ndarray, b: np.ndarray, exact: bool) -> str:
    bad = (a != b) if exact else ~np.isclose(a, b, rtol=RTOL, atol=ATOL)
    bad &= ~(np.isnan(a) & np.isnan(b))
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    return f"first difference at (p, t, x) = {idx}: core {a[idx]!r}, reference {b[idx]!r}"


def _bitwise_note(shares, cash, equity, ref) -> str:
    """Where the core first leaves the reference bit for bit (to tell rounding from semantics)."""
    out = []
    for name, a, b in (("shares", shares, ref["shares"]), ("cash", cash, ref["cash"]),
                       ("equity", equity, ref["equity"])):
        bad = (a != b) & ~(np.isnan(a) & np.isnan(b))
        if a.shape == b.shape and bad.any():
            first = min((int(t), int(p), int(x)) for p, t, x in np.argwhere(bad))
            t, p, x = first
            out.append(f"{name} first differs bitwise at (p, t, x)=({p}, {t}, {x}): "
                       f"core {a[p, t, x]!r}, reference {b[p, t, x]!r}")
    return "\n".join(out) or "cash, equity and shares agree bit for bit"


def _same_orders(kind: str, frame: pl.DataFrame, want: list[tuple], ds: xr.Dataset,
                 per_symbol: bool, note: str) -> None:
    """The core's logged orders of one kind equal the reference's: bar, account, symbol and
    reason exactly, shares to RTOL."""
    got = _rows(frame, ds, ["shares", "reason"], per_symbol)
    want = sorted(want, key=_order(per_symbol))
    assert [(g[0], g[1], g[2], _reason(g[4])) for g in got] == \
        [w[:3] + (w[4],) for w in want], f"{kind}: core {got}\nreference {want}\n{note}"
    for g, w in zip(got, want):
        assert math.isclose(g[3], w[3], rel_tol=RTOL, abs_tol=1e-9), \
            f"{kind} shares: core {g}, reference {w}"


def compare(case: Case, res, ref: dict, ds: xr.Dataset) -> None:
    """Assert that a core result equals the reference output."""
    has_param = case.param_dim
    shares = _ptx(res.positions, "symbol", has_param)
    cash = _ptx(res.cash, "account", has_param)
    equity = _ptx(res.account_equity, "account", has_param)
    assert shares.shape == ref["shares"].shape, (shares.shape, ref["shares"].shape)
    assert cash.shape == ref["cash"].shape, (cash.shape, ref["cash"].shape)
    assert equity.shape == ref["equity"].shape, (equity.shape, ref["equity"].shape)

    note = _bitwise_note(shares, cash, equity, ref)

    # trades, one for one, in the order they happen within a parameter set
    per_symbol = case.settings.get("accounts") == "per_symbol"
    got = _rows(res.trades, ds, ["side", "shares", "price", "fees", "slippage_cost", "reason"],
                per_symbol)
    want = sorted(ref["trades"], key=_order(per_symbol))
    n = min(len(got), len(want))
    for i in range(n):
        g, w = got[i], want[i]
        gk = (g[0], g[1], g[2], _side(g[3]), _reason(g[8]))
        wk = (w[0], w[1], w[2], w[3], w[8])
        assert gk == wk, f"trade {i}: core (t,p,s,side,reason)={gk}, reference {wk}\n" \
                         f"core {g}\nref  {w}\n{note}"
        assert g[4] == w[4], f"trade {i} shares: core {g}, reference {w}\n{note}"
        for j, name in ((5, "price"), (6, "fee"), (7, "slippage_cost")):
            assert _close(g[j], w[j]), f"trade {i} {name}: core {g}, reference {w}"
    assert len(got) == len(want), (
        f"{len(got)} core trades, {len(want)} reference trades; first extra: "
        f"{(got + [None])[n] if len(got) > n else want[n]}\n{note}")

    # share counts exactly; cash and equity to 1e-9 relative
    assert np.array_equal(shares, ref["shares"]), "shares: " + _first_diff(
        shares, ref["shares"], exact=True)
    assert np.allclose(cash, ref["cash"], rtol=RTOL, atol=ATOL), "cash: " + _first_diff(
        cash, ref["cash"], exact=False)
    assert np.allclose(equity, ref["equity"], rtol=RTOL, atol=ATOL), "equity: " + _first_diff(
        equity, ref["equity"], exact=False)

    # unfilled orders (remainders) and orders refused by a risk gate, one for one
    _same_orders("unfilled", res.unfilled, ref["unfilled"], ds, per_symbol, note)
    filtered = res.filtered if res.filtered is not None else pl.DataFrame()
    _same_orders("filtered", filtered, ref["filtered"], ds, per_symbol, note)

    # the bar at which the drawdown stop halted each account
    if case.settings.get("max_drawdown_stop", 0.0) > 0:
        halted = np.asarray(res.halted_at.values, dtype=np.int64).reshape(ref["halted_at"].shape)
        assert np.array_equal(halted, ref["halted_at"]), \
            f"halted_at: core {halted.tolist()}, reference {ref['halted_at'].tolist()}"


# ----------------------------------------------------------------------------- tests


def flat_case(close, *, entries=None, weights=None, **settings) -> Case:
    """A hand-made case: every bar valid with open = close and ample volume.

    ``entries``: (t, s) pairs; ``weights``: (t, s, w) triples; one parameter set."""
    close = np.asarray(close, dtype=float)
    T, S = close.shape
    e = x = w = None
    if weights is not None:
        w = np.full((1, T, S), NAN)
        for t, s, v in weights:
            w[0, t, s] = v
    else:
        e = np.zeros((1, T, S), bool)
        for t, s in entries:
            e[0, t, s] = True
        x = np.zeros_like(e)
    return Case(close, close.copy(), np.full((T, S), 1e6), np.ones((T, S), bool), None, None,
                np.full(S, -1, np.int64), e, x, w, settings, False, False)


# Anchors that random generation reaches only now and then.
# size="all" with next-open fills and three symbols entering on one bar (reading R5)
EX_ALL_NEXT_OPEN = flat_case(np.full((3, 3), 10.0), entries=[(0, 0), (0, 1), (0, 2)],
                             size="all")
# close fills, fractional shares: a sell then nothing else for the same symbol (R7)
EX_CLOSE_RESIDUAL = flat_case([[10.0], [10.5]], weights=[(0, 0, 0.25), (1, 0, 0.1)],
                              fill="close")
# close fills, fractional shares: rotating all equity from one symbol into another (R10)
EX_CLOSE_ROTATION = flat_case([[8.0, 20.0], [7.56, 41.8]],
                              weights=[(0, 0, 0.5), (0, 1, 0.5), (1, 0, 0.0), (1, 1, 1.0)],
                              fill="close")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@example(case=EX_ALL_NEXT_OPEN)
@given(case=cases(mode="signals"))
def test_core_matches_reference_signals(case: Case):
    ds = case.dataset()
    res = run_core(case)
    compare(case, res, case.reference(), ds)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@example(case=EX_CLOSE_RESIDUAL)
@example(case=EX_CLOSE_ROTATION)
@given(case=cases(mode="weights"))
def test_core_matches_reference_weights(case: Case):
    ds = case.dataset()
    res = run_core(case)
    compare(case, res, case.reference(), ds)


def _frame_for(df: pl.DataFrame, p: int) -> pl.DataFrame:
    if "param" in df.columns:
        df = df.filter(pl.col("param") == p).drop("param")
    return df


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(case=cases(max_T=30, max_S=5, max_P=3).filter(lambda c: c.shape[0] > 1))
def test_parameter_sets_in_one_call_equal_separate_calls(case: Case):
    together = run_core(case)
    assert case.param_dim
    for p in range(case.shape[0]):
        alone = run_core(case, p)
        for name in ("account_equity", "cash", "positions"):
            a = getattr(together, name).isel(param=p).values
            b = getattr(alone, name).values
            assert np.array_equal(a, b, equal_nan=True), f"{name}, param {p}: " + \
                _first_diff(a[None], b[None], exact=True)
        for name in ("trades", "unfilled", "filtered"):
            a = _frame_for(getattr(together, name), p)
            b = _frame_for(getattr(alone, name), 0)
            assert a.equals(b), f"{name}, param {p}:\n{a}\n{b}"


# ----------------------------------------------------------------------------- harness check


@dataclass
class _AdapterResult:
    account_equity: xr.DataArray
    cash: xr.DataArray
    positions: xr.DataArray
    trades: pl.DataFrame
    unfilled: pl.DataFrame
    filtered: pl.DataFrame
    halted_at: xr.DataArray | None


def _reference_adapter(ds: xr.Dataset, *, entries=None, exits=None, weights=None,
                       delist_bar=None, keep="full", **kw):
    """The reference behind ``pg.simulate``'s interface (for checking this harness only)."""
    def arr(x, dtype):
        if x is None:
            return None, False
        if isinstance(x, xr.DataArray):
            has = "param" in x.dims
            x = x.transpose(*(("param",) if has else ()), "time", "symbol").values
        x = np.asarray(x, dtype=dtype)
        return (x if x.ndim == 3 else x[None]), x.ndim == 3

    e, pe = arr(entries, bool)
    x, px = arr(exits, bool)
    w, pw = arr(weights, float)
    has_param = pe or px or pw
    get = lambda k: ds[k].values if k in ds else None  # noqa: E731
    ref = reference_simulate(get("open"), get("close"), get("volume"), get("valid"),
                             get("split_ratio"), get("dividend"), delist_bar,
                             entries=e, exits=x, weights=w, high=get("high"), low=get("low"),
                             **kw)
    P, T, A = ref["equity"].shape
    time, symbol = ds.time.values, ds.symbol.values
    account = np.arange(A)

    def da(a, last, coord):
        if has_param:
            return xr.DataArray(a, dims=("param", "time", last),
                                coords={"param": np.arange(P), "time": time, last: coord})
        return xr.DataArray(a[0], dims=("time", last), coords={"time": time, last: coord})

    def frame(rows, schema):
        d = {c: [r[i] for r in rows] for i, c in enumerate(schema)}
        d["time"] = [pd.Timestamp(time[t]).to_pydatetime() for t in d["time"]]
        d["symbol"] = [str(symbol[s]) for s in d["symbol"]]
        return pl.DataFrame(d, schema=schema)

    base = {"time": pl.Datetime("us"), "param": pl.Int64, "symbol": pl.String}
    trades = frame(ref["trades"], {**base, "side": pl.Int8, "shares": pl.Float64,
                                   "price": pl.Float64, "fees": pl.Float64,
                                   "slippage_cost": pl.Float64, "reason": pl.String})
    unfilled = frame(ref["unfilled"], {**base, "shares": pl.Float64, "reason": pl.String})
    filtered = frame(ref["filtered"], {**base, "shares": pl.Float64, "reason": pl.String})
    halted_at = None
    if kw.get("max_drawdown_stop", 0.0) > 0:
        h = ref["halted_at"]
        halted_at = (xr.DataArray(h, dims=("param", "account")) if has_param
                     else xr.DataArray(h[0], dims=("account",)))
    return _AdapterResult(da(ref["equity"], "account", account),
                          da(ref["cash"], "account", account),
                          da(ref["shares"], "symbol", symbol), trades, unfilled, filtered,
                          halted_at)


def test_harness_catches_a_difference():
    """The comparison is not vacuous: a perturbed reference output fails it."""
    rng = np.random.default_rng(0)
    T, S = 12, 3
    close = np.round(rng.uniform(10, 20, (T, S)), 2)
    case = Case(close, close, np.full((T, S), 1e6), np.ones((T, S), bool), None, None,
                np.full(S, -1, np.int64), None, None,
                np.where(rng.uniform(size=(1, T, S)) < 0.5, 0.3, NAN),
                {"fill": "close", "lot_size": 1.0}, False, False)
    ds = case.dataset()
    res = _reference_adapter(ds, **case.intents(), delist_bar=case.delist_bar, **case.settings)
    compare(case, res, case.reference(), ds)
    ref = case.reference()
    ref["cash"][0, 5, 0] *= 1 + 1e-7
    with pytest.raises(AssertionError, match="cash"):
        compare(case, res, ref, ds)
    ref = case.reference()
    ref["trades"][0] = ref["trades"][0][:4] + (ref["trades"][0][4] + 1,) + ref["trades"][0][5:]
    with pytest.raises(AssertionError, match="shares"):
        compare(case, res, ref, ds)
