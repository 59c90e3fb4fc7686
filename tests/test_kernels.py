"""Tests for ``pitgrid.kernels``.

Every kernel is checked three ways:

1. against a slow, obviously correct reference (Python loops over windows, or
   pandas), on random ``(time, symbol)`` panels with NaNs, infinities, whole-row
   gaps, ties and constant stretches (hypothesis picks shapes, styles, seeds and
   parameters; the values come from a seeded NumPy generator);
2. for causality: scrambling or truncating the rows after a cut ``c`` never
   changes output rows ``<= c`` (compared exactly, NaN positions included);
3. for the calling conventions: ``name``, ``name_into`` and ``name_nb`` agree
   bit for bit, ``_into`` refuses bad outputs, the raw kernels are
   ``njit(cache=True, nogil=True)`` and importing compiles nothing.
"""
from __future__ import annotations

import inspect
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pitgrid.kernels as K
from pitgrid.kernels import (
    cross_section, moving, oscillators, relations, returns, signals, volatility,
)

RTOL = 1e-9
ATOL = 1e-9
SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])


# --------------------------------------------------------------------------- random panels

STYLES = ("walk", "normal", "discrete", "offset", "flat")


def make_panel(rng: np.random.Generator, n_time: int, n_sym: int, style: str, nan_p: float,
               gap: bool, inf_p: float) -> np.ndarray:
    """A float64 (time, symbol) panel in one of a few styles, with missing values."""
    if style == "walk":  # positive prices
        x = 100.0 * np.exp(np.cumsum(0.02 * rng.standard_normal((n_time, n_sym)), axis=0))
    elif style == "normal":  # mixed signs, varied scale per symbol
        x = rng.standard_normal((n_time, n_sym)) * rng.choice([1e-3, 1.0, 50.0], size=n_sym)
    elif style == "discrete":  # small integers: ties, equal neighbours, constant windows
        x = rng.integers(0, 4, size=(n_time, n_sym)).astype(np.float64)
    elif style == "offset":  # large level, small moves: cancellation-prone
        x = 1e4 + rng.standard_normal((n_time, n_sym))
    else:  # "flat": long constant stretches broken by jumps
        steps = rng.random((n_time, n_sym)) < 0.15
        x = 50.0 + np.cumsum(steps * rng.standard_normal((n_time, n_sym)), axis=0)
    x = np.ascontiguousarray(x, dtype=np.float64)
    if nan_p > 0:
        x[rng.random(x.shape) < nan_p] = np.nan
    if gap and n_time > 2:  # a run of missing bars in one symbol, or a whole missing row
        a = int(rng.integers(0, n_time - 1))
        b = int(rng.integers(a + 1, min(n_time, a + 8) + 1))
        if rng.random() < 0.5:
            x[a:b, int(rng.integers(0, n_sym))] = np.nan
        else:
            x[a:b, :] = np.nan
    if inf_p > 0:
        m = rng.random(x.shape) < inf_p
        x[m] = np.where(rng.random(x.shape) < 0.5, np.inf, -np.inf)[m]
    return x


@st.composite
def panel_spec(draw, max_time: int = 60, max_sym: int = 6) -> dict:
    return dict(
        n_time=draw(st.integers(1, max_time)),
        n_sym=draw(st.integers(1, max_sym)),
        style=draw(st.sampled_from(STYLES)),
        nan_p=draw(st.sampled_from([0.0, 0.0, 0.03, 0.15, 0.5])),
        gap=draw(st.booleans()),
        inf_p=draw(st.sampled_from([0.0, 0.0, 0.02])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def make_inputs(kind: str, spec: dict) -> tuple[np.ndarray, ...]:
    """The input arrays of a kernel family, all with time on axis 0."""
    rng = np.random.default_rng(spec["seed"])
    t, n = spec["n_time"], spec["n_sym"]
    opts = dict(style=spec["style"], nan_p=spec["nan_p"], gap=spec["gap"], inf_p=spec["inf_p"])
    x = make_panel(rng, t, n, **opts)
    if kind == "x":
        return (x,)
    if kind == "xy":
        y = make_panel(rng, t, 1, **{**opts, "gap": False})[:, 0].copy()
        return x, y
    if kind == "ab":
        return x, make_panel(rng, t, n, **opts)
    if kind == "hlc":
        level = np.where(np.isfinite(x), np.abs(x), 1.0)
        spread = np.abs(rng.standard_normal((t, n))) * level * 0.01
        high = x + spread * rng.random((t, n))
        low = x - spread * rng.random((t, n))
        for a in (high, low):
            a[rng.random(a.shape) < spec["nan_p"] / 3] = np.nan
        return np.ascontiguousarray(high), np.ascontiguousarray(low), x
    raise AssertionError(kind)


# --------------------------------------------------------------------------- references


def clean(a: np.ndarray) -> np.ndarray:
    """Non-finite values are missing: NaN."""
    return np.where(np.isfinite(a), a, np.nan)


def ref_window(x: np.ndarray, w: int, f: Callable[[np.ndarray], float]) -> np.ndarray:
    """f(window) for every window of w rows that are all present; NaN elsewhere."""
    x = clean(x)
    out = np.full(x.shape, np.nan)
    for j in range(x.shape[1]):
        for t in range(w - 1, x.shape[0]):
            win = x[t - w + 1:t + 1, j]
            if np.all(np.isfinite(win)):
                out[t, j] = f(win)
    return out


def ref_skip(cols: tuple[np.ndarray, ...], g: Callable[..., np.ndarray]) -> np.ndarray:
    """Recursive rule: run g on each symbol's present bars only, NaN on missing bars."""
    cols = tuple(clean(c) for c in cols)
    out = np.full(cols[0].shape, np.nan)
    for j in range(cols[0].shape[1]):
        mask = np.all([np.isfinite(c[:, j]) for c in cols], axis=0)
        if mask.any():
            out[mask, j] = g(*(c[mask, j] for c in cols))
    return out


def seeded_ewm(v: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Seed with mean(v[:n]) at index n-1, then y = (1 - alpha) * y + alpha * v (pandas ewm)."""
    out = np.full(len(v), np.nan)
    if len(v) >= n:
        s = pd.Series(np.concatenate([[np.mean(v[:n])], v[n:]]))
        out[n - 1:] = s.ewm(alpha=alpha, adjust=False).mean().to_numpy()
    return out


def ema_1d(v, n):
    return seeded_ewm(v, n, 2.0 / (n + 1.0))


def rsi_1d(v, n):
    d = np.diff(v)
    ag = seeded_ewm(np.maximum(d, 0.0), n, 1.0 / n)
    al = seeded_ewm(np.maximum(-d, 0.0), n, 1.0 / n)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(ag + al > 0, 100.0 * ag / (ag + al), 50.0)
    r[np.isnan(ag)] = np.nan
    return np.concatenate([[np.nan], r])


def atr_1d(h, lo, c, n):
    pc = c[:-1]
    tr = np.maximum.reduce([h[1:] - lo[1:], np.abs(h[1:] - pc), np.abs(lo[1:] - pc)])
    return np.concatenate([[np.nan], seeded_ewm(tr, n, 1.0 / n)])


def macd_1d(v, fast, slow, signal):
    line = ema_1d(v, fast) - ema_1d(v, slow)
    sig = np.full(len(v), np.nan)
    ok = np.isfinite(line)
    if ok.any():
        sig[ok] = ema_1d(line[ok], signal)
    return line, sig, line - sig


def ref_sma(x, window):
    out = ref_window(x, window, np.mean)
    pdr = pd.DataFrame(clean(x)).rolling(window, min_periods=window).mean().to_numpy()
    assert_close(out, pdr)  # the loop and pandas agree
    return out


def ref_wma(x, window):
    wts = np.arange(1, window + 1, dtype=np.float64)
    return ref_window(x, window, lambda v: np.dot(wts, v) / wts.sum())


def ref_ema(x, window):
    return ref_skip((x,), lambda v: ema_1d(v, window))


def ref_rolling_max(x, window):
    out = ref_window(x, window, np.max)
    np.testing.assert_array_equal(
        out, pd.DataFrame(clean(x)).rolling(window, min_periods=window).max().to_numpy())
    return out


def ref_rolling_min(x, window):
    return ref_window(x, window, np.min)


def std_of(v, ddof):
    """Two-pass std; exactly 0 for a window of equal values (the documented rule: a
    two-pass mean of 0.1, 0.1, 0.1 is not exactly 0.1, so np.std alone gives ~1e-17)."""
    return 0.0 if v.max() == v.min() else np.std(v, ddof=ddof)


def ref_rolling_std(x, window, ddof):
    # Not cross-checked against pandas: its online rolling variance leaves ~1e-7 on
    # constant windows that follow larger values, where the two-pass loop is exact.
    return ref_window(x, window, lambda v: std_of(v, ddof))


def ref_rolling_zscore(x, window, ddof):
    def z(v):
        sd = std_of(v, ddof)
        return (v[-1] - np.mean(v)) / sd if sd > 0 else np.nan
    return ref_window(x, window, z)


def ref_bollinger(x, window, k, ddof):
    mid = ref_window(x, window, lambda v: v[0] if v.max() == v.min() else np.mean(v))
    sd = ref_window(x, window, lambda v: std_of(v, ddof))
    return mid, mid + k * sd, mid - k * sd


def ref_atr(high, low, close, window):
    return ref_skip((high, low, close), lambda h, lo, c: atr_1d(h, lo, c, window))


def ref_rsi(x, window):
    return ref_skip((x,), lambda v: rsi_1d(v, window))


def ref_macd(x, fast, slow, signal):
    return tuple(ref_skip((x,), lambda v, i=i: macd_1d(v, fast, slow, signal)[i]) for i in range(3))


def _finite_or_nan(a):
    return np.where(np.isfinite(a), a, np.nan)


def ref_momentum(x, window):
    x = clean(x)
    out = np.full(x.shape, np.nan)
    with np.errstate(all="ignore"):
        out[window:] = x[window:] / x[:-window] - 1.0
    return _finite_or_nan(out)


def ref_simple_returns(x):
    return ref_momentum(x, 1)


def ref_log_returns(x):
    x = clean(x)
    out = np.full(x.shape, np.nan)
    a, b = x[1:], x[:-1]
    with np.errstate(all="ignore"):
        out[1:] = np.where((a > 0) & (b > 0), np.log(a / b), np.nan)
    return _finite_or_nan(out)


def _pair_moments(wx, wy):
    dx = np.zeros(len(wx)) if wx.max() == wx.min() else wx - wx.mean()
    dy = np.zeros(len(wy)) if wy.max() == wy.min() else wy - wy.mean()
    return (dx * dy).sum(), (dx * dx).sum(), (dy * dy).sum()


def ref_pair(x, y, window, f):
    x, y = clean(x), clean(y)
    out = np.full(x.shape, np.nan)
    for j in range(x.shape[1]):
        for t in range(window - 1, x.shape[0]):
            wx, wy = x[t - window + 1:t + 1, j], y[t - window + 1:t + 1]
            if np.all(np.isfinite(wx)) and np.all(np.isfinite(wy)):
                out[t, j] = f(*_pair_moments(wx, wy))
    return out


def ref_rolling_corr(x, y, window):
    return ref_pair(x, y, window,
                    lambda c, a, b: c / np.sqrt(a * b) if a > 0 and b > 0 else np.nan)


def ref_rolling_beta(x, y, window):
    return ref_pair(x, y, window, lambda c, a, b: c / b if b > 0 else np.nan)


def ref_cs_rank(x, pct):
    df = pd.DataFrame(clean(x))
    r = df.rank(axis=1, method="average").to_numpy()
    if not pct:
        return r
    m = df.count(axis=1).to_numpy()[:, None].astype(float)
    with np.errstate(all="ignore"):
        return np.where(m > 1, (r - 1.0) / (m - 1.0), np.where(np.isnan(r), np.nan, 0.5))


def ref_cs_zscore(x, ddof):
    x = clean(x)
    out = np.full(x.shape, np.nan)
    for t in range(x.shape[0]):
        ok = np.isfinite(x[t])
        v = x[t, ok]
        if len(v) - ddof >= 1 and v.max() > v.min():
            out[t, ok] = (v - v.mean()) / np.std(v, ddof=ddof)
    return out


def ref_cross(a, b, up):
    a, b = clean(a), clean(b)
    out = np.zeros(a.shape, dtype=bool)
    ok = np.isfinite(a[1:]) & np.isfinite(b[1:]) & np.isfinite(a[:-1]) & np.isfinite(b[:-1])
    if up:
        out[1:] = ok & (a[1:] > b[1:]) & (a[:-1] <= b[:-1])
    else:
        out[1:] = ok & (a[1:] < b[1:]) & (a[:-1] >= b[:-1])
    return out


# --------------------------------------------------------------------------- the kernel table


@dataclass(frozen=True)
class Case:
    kind: str  # input family: "x", "xy", "ab", "hlc"
    params: Callable  # draw -> dict, in the kernel's positional parameter order
    ref: Callable  # (*inputs, **params) -> array or tuple of arrays


windows = st.integers(1, 15)


def _window(draw):
    return {"window": draw(windows)}


def _window_ddof(draw):
    w = draw(st.integers(2, 15))
    return {"window": w, "ddof": draw(st.integers(0, 1))}


def _bollinger(draw):
    w = draw(st.integers(1, 15))
    return {"window": w, "k": draw(st.sampled_from([0.5, 2.0, 2.5])),
            "ddof": draw(st.integers(0, min(1, w - 1)))}


def _macd(draw):
    fast = draw(st.integers(1, 8))
    return {"fast": fast, "slow": draw(st.integers(fast + 1, 16)),
            "signal": draw(st.integers(1, 8))}


def _none(draw):
    return {}


CASES: dict[str, Case] = {
    "sma": Case("x", _window, ref_sma),
    "ema": Case("x", _window, ref_ema),
    "wma": Case("x", _window, ref_wma),
    "rolling_max": Case("x", _window, ref_rolling_max),
    "rolling_min": Case("x", _window, ref_rolling_min),
    "rolling_std": Case("x", _window_ddof, ref_rolling_std),
    "rolling_zscore": Case("x", _window_ddof, ref_rolling_zscore),
    "bollinger": Case("x", _bollinger, ref_bollinger),
    "atr": Case("hlc", _window, ref_atr),
    "rsi": Case("x", _window, ref_rsi),
    "macd": Case("x", _macd, ref_macd),
    "simple_returns": Case("x", _none, ref_simple_returns),
    "log_returns": Case("x", _none, ref_log_returns),
    "momentum": Case("x", _window, ref_momentum),
    "rolling_corr": Case("xy", _window, ref_rolling_corr),
    "rolling_beta": Case("xy", _window, ref_rolling_beta),
    "cs_rank": Case("x", lambda draw: {"pct": draw(st.booleans())}, ref_cs_rank),
    "cs_zscore": Case("x", lambda draw: {"ddof": draw(st.integers(0, 2))}, ref_cs_zscore),
    "crossover": Case("ab", _none, lambda a, b: ref_cross(a, b, True)),
    "crossunder": Case("ab", _none, lambda a, b: ref_cross(a, b, False)),
    "crosses": Case("ab", _none, lambda a, b: (ref_cross(a, b, True), ref_cross(a, b, False))),
}


def test_every_kernel_is_tested_and_exported_in_three_forms():
    assert set(CASES) == set(K.KERNELS)
    forms = {f"{k}{s}" for k in K.KERNELS for s in ("", "_into", "_nb")}
    assert set(K.__all__) == forms | {"KERNELS", "Bands", "Crosses", "MACD", "Stream",
                                    "stream"}
    assert all(callable(getattr(K, n)) for n in forms)


def as_tuple(r) -> tuple[np.ndarray, ...]:
    return tuple(r) if isinstance(r, tuple) else (r,)


def run(name: str, inputs, params) -> tuple[np.ndarray, ...]:
    return as_tuple(getattr(K, name)(*inputs, **params))


def assert_close(actual, expected, rtol=RTOL, atol=ATOL):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    if actual.dtype == bool or expected.dtype == bool:
        np.testing.assert_array_equal(actual, expected)
        return
    assert not np.isinf(actual).any(), "kernels never output infinities"
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected),
                                  err_msg="NaN positions differ")
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


# --------------------------------------------------------------------------- 1. against references


@pytest.mark.parametrize("name", list(CASES))
@SETTINGS
@given(data=st.data())
def test_matches_reference(name, data):
    case = CASES[name]
    inputs = make_inputs(case.kind, data.draw(panel_spec(), label="panel"))
    params = case.params(data.draw)
    got = run(name, inputs, params)
    want = as_tuple(case.ref(*inputs, **params))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_close(g, w)


# --------------------------------------------------------------------------- 2. causality


def scramble(a: np.ndarray, cut: int, rng: np.random.Generator, mode: str) -> np.ndarray:
    """Replace rows > cut: fresh random values with NaNs, all NaN, reversed, or huge values."""
    b = a.copy()
    tail = b[cut + 1:]
    if mode == "random":
        tail[...] = rng.standard_normal(tail.shape) * 100.0
        tail[rng.random(tail.shape) < 0.2] = np.nan
    elif mode == "nan":
        tail[...] = np.nan
    elif mode == "reverse":
        tail[...] = tail[::-1].copy()
    else:
        tail[...] = 1e300
    return b


@pytest.mark.parametrize("name", list(CASES))
@SETTINGS
@given(data=st.data())
def test_causal(name, data):
    """Output rows <= c never depend on input rows > c: scramble or cut them off."""
    case = CASES[name]
    spec = data.draw(panel_spec(), label="panel")
    inputs = make_inputs(case.kind, spec)
    params = case.params(data.draw)
    cut = data.draw(st.integers(0, spec["n_time"] - 1), label="cut")
    mode = data.draw(st.sampled_from(["random", "nan", "reverse", "huge"]), label="mode")
    rng = np.random.default_rng(spec["seed"] + 1)
    full = run(name, inputs, params)
    scrambled = run(name, tuple(scramble(a, cut, rng, mode) for a in inputs), params)
    truncated = run(name, tuple(a[:cut + 1].copy() for a in inputs), params)
    for f, s, tr in zip(full, scrambled, truncated):
        np.testing.assert_array_equal(f[:cut + 1], s[:cut + 1])
        np.testing.assert_array_equal(f[:cut + 1], tr)


# --------------------------------------------------------------------------- 3. conventions


def fixed_inputs(name: str, seed: int = 7) -> tuple[tuple[np.ndarray, ...], dict]:
    spec = dict(n_time=40, n_sym=5, style="walk", nan_p=0.1, gap=True, inf_p=0.0, seed=seed)
    params = {"window": 4, "ddof": 1, "k": 2.0, "fast": 3, "slow": 7, "signal": 3, "pct": True}
    sig = inspect.signature(getattr(K, name + "_nb")).parameters  # positional order
    return make_inputs(CASES[name].kind, spec), {k: params[k] for k in sig if k in params}


@pytest.mark.parametrize("name", list(CASES))
def test_alloc_into_and_nb_agree(name):
    inputs, params = fixed_inputs(name)
    got = run(name, inputs, params)
    outs = tuple(np.full_like(g, 123.0) if g.dtype != bool else np.ones_like(g) for g in got)
    ret = as_tuple(getattr(K, name + "_into")(*inputs, *params.values(), *outs))
    outs_nb = tuple(np.empty_like(g) for g in got)
    getattr(K, name + "_nb")(*inputs, *params.values(), *outs_nb)
    for g, o, r, n in zip(got, outs, ret, outs_nb):
        assert r is o
        np.testing.assert_array_equal(g, o)
        np.testing.assert_array_equal(g, n)
        assert g.dtype == (bool if name.startswith("cross") else np.float64)


@pytest.mark.parametrize("name", list(CASES))
def test_raw_kernels_are_cached_nogil_njit(name):
    nb = getattr(K, name + "_nb")
    assert nb.targetoptions.get("nopython") and nb.targetoptions.get("nogil")
    assert type(nb._cache).__name__ == "FunctionCache", "njit(cache=True) expected"


def test_raw_kernels_run_in_threads():
    """nogil: concurrent calls on separate arrays give the serial results."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((500, 8)) for _ in range(4)]
    serial = [K.rolling_std(x, 20) for x in xs]
    outs = [np.empty_like(x) for x in xs]
    with ThreadPoolExecutor(2) as ex:
        list(ex.map(lambda i: K.rolling_std_nb(xs[i], 20, 1, outs[i]), range(4)))
    for s, o in zip(serial, outs):
        np.testing.assert_array_equal(s, o)


def test_one_dimensional_input_is_one_symbol():
    x = 100 + np.cumsum(np.random.default_rng(1).standard_normal(30))
    assert K.sma(x, 5).shape == (30,)
    np.testing.assert_array_equal(K.sma(x, 5), K.sma(x[:, None], 5)[:, 0])
    np.testing.assert_array_equal(K.rolling_corr(x, x[::-1].copy(), 5),
                                  K.rolling_corr(x[:, None], x[::-1], 5)[:, 0])
    out = np.empty(30)
    assert K.ema_into(x.tolist(), 5, out) is out
    np.testing.assert_array_equal(out, K.ema(x, 5))
    assert K.macd(x).line.shape == (30,)
    with pytest.raises(ValueError, match="2-D"):
        K.cs_rank(x)
    with pytest.raises(ValueError, match="ambiguous|b\\[:, None\\]"):
        K.crossover(np.zeros((30, 2)), x)


def test_into_refuses_bad_outputs():
    x = np.random.default_rng(2).standard_normal((20, 3))
    with pytest.raises(TypeError):
        K.sma_into(x, 3, np.empty((20, 3), dtype=np.float32))
    with pytest.raises(TypeError):
        K.sma_into(x, 3, [[0.0] * 3] * 20)
    with pytest.raises(ValueError, match="shape"):
        K.sma_into(x, 3, np.empty((20, 4)))
    with pytest.raises(ValueError, match="contiguous"):
        K.sma_into(x, 3, np.empty((3, 20)).T)
    ro = np.empty((20, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        K.sma_into(x, 3, ro)
    with pytest.raises(ValueError, match="overlap"):
        K.sma_into(x, 3, x)
    with pytest.raises(TypeError):
        K.crossover_into(x, 0.0, np.empty((20, 3)))
    buf = np.empty((20, 3))
    with pytest.raises(ValueError, match="overlap"):
        K.bollinger_into(x, 3, 2.0, 0, buf, buf, np.empty((20, 3)))


def test_parameter_checks():
    x = np.ones((10, 2))
    for bad in (0, -3):
        with pytest.raises(ValueError):
            K.sma(x, bad)
    for bad in (2.5, True, "3", None):
        with pytest.raises(TypeError):
            K.sma(x, bad)
    with pytest.raises(ValueError, match="ddof"):
        K.rolling_std(x, 1)  # ddof=1 needs window >= 2
    with pytest.raises(ValueError, match="fast"):
        K.macd(x, 26, 12)
    with pytest.raises(ValueError, match="shape"):
        K.atr(x, x, np.ones((10, 3)))
    with pytest.raises(ValueError, match="rows"):
        K.rolling_beta(x, np.ones(9), 3)
    with pytest.raises(ValueError):  # the raw kernels check shapes too
        K.sma_nb(x, 3, np.empty((9, 2)))
    with pytest.raises(ValueError):
        K.sma_nb(x, 0, np.empty((10, 2)))


def test_import_compiles_nothing():
    code = (
        "import pitgrid.kernels as K\n"
        "compiled = [n for n in K.KERNELS if getattr(K, n + '_nb').signatures]\n"
        "assert not compiled, compiled\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_jitted_helpers_are_identical_copies():
    """Each module keeps its own ``_nadd`` (numba's cache ignores edits in other files)."""
    srcs = {inspect.getsource(m._nadd.py_func)
            for m in (moving, volatility, oscillators, relations, cross_section)}
    assert len(srcs) == 1
    assert not hasattr(returns, "_nadd") and not hasattr(signals, "_nadd")


# ------------------------------------------------------------------- documented rules, by example


def test_window_rule_warm_up_and_gap():
    x = np.array([1.0, 2, 3, np.nan, 5, 6, 7, 8])
    np.testing.assert_array_equal(K.sma(x, 3), [np.nan, np.nan, 2, np.nan, np.nan, np.nan, 6, 7])
    np.testing.assert_array_equal(K.rolling_max(x, 2), [np.nan, 2, 3, np.nan, np.nan, 6, 7, 8])
    np.testing.assert_array_equal(K.momentum(x, 2), [np.nan, np.nan, 2, np.nan, 2 / 3, np.nan, 0.4,
                                                     1 / 3])
    assert np.isnan(K.sma(np.array([1.0, np.inf, 3.0, 4.0]), 2)[1:3]).all()  # inf is missing


def test_recursive_rule_skips_missing_bars():
    x = np.array([1.0, np.nan, 3.0, 5.0, np.nan, 9.0])
    e = K.ema(x, 2)  # alpha = 2/3, seeded with mean(1, 3) on the 2nd present bar
    np.testing.assert_allclose(e, [np.nan, np.nan, 2.0, 2 + (5 - 2) * 2 / 3, np.nan,
                                   4 + (9 - 4) * 2 / 3])
    np.testing.assert_allclose(K.rsi(np.array([1.0, 2, 3, 4]), 2), [np.nan, np.nan, 100, 100])
    np.testing.assert_allclose(K.rsi(np.array([5.0, 5, 5, 5]), 2), [np.nan, np.nan, 50, 50])
    # the change after a gap is measured from the last present price
    np.testing.assert_allclose(K.rsi(np.array([1.0, 2, np.nan, 1]), 2),
                               [np.nan, np.nan, np.nan, 50])


def test_macd_is_built_from_ema_exactly():
    inputs, _ = fixed_inputs("macd")
    x = inputs[0]
    m = K.macd(x, 5, 11, 4)
    line = K.ema(x, 5) - K.ema(x, 11)
    np.testing.assert_array_equal(m.line, line)
    np.testing.assert_array_equal(m.signal, K.ema(line, 4))  # NaN line rows are skipped
    np.testing.assert_array_equal(m.hist, m.line - m.signal)


def test_atr_warm_up_and_first_values():
    h = np.array([[11.0], [12], [13], [12]])
    lo = np.array([[9.0], [10], [10], [8]])
    c = np.array([[10.0], [11], [12], [9]])
    # TR from bar 1: max(2, 2, 0) = 2; bar 2: max(3, 2, 1) = 3; bar 3: max(4, 0, 4) = 4
    np.testing.assert_allclose(K.atr(h, lo, c, 2)[:, 0], [np.nan, np.nan, 2.5, (2.5 + 4) / 2])


def test_cross_section_ties_and_missing():
    x = np.array([[3.0, 1.0, np.nan, 3.0, 2.0], [np.nan, 7.0, np.nan, np.nan, np.nan]])
    np.testing.assert_array_equal(K.cs_rank(x, pct=False)[0], [3.5, 1, np.nan, 3.5, 2])
    np.testing.assert_array_equal(K.cs_rank(x)[0], [2.5 / 3, 0, np.nan, 2.5 / 3, 1 / 3])
    np.testing.assert_array_equal(K.cs_rank(x)[1], [np.nan, 0.5, np.nan, np.nan, np.nan])
    assert np.isnan(K.cs_zscore(x)[1]).all()  # one present symbol: undefined
    assert np.isnan(K.cs_zscore(np.full((1, 4), 2.0))).all()  # zero dispersion


def test_crossover_examples():
    a = np.array([1.0, 2, 3, 2, np.nan, 3, 1, 3])
    np.testing.assert_array_equal(K.crossover(a, 2.0),
                                  [False, False, True, False, False, False, False, True])
    np.testing.assert_array_equal(K.crossunder(a, 2.0),
                                  [False, False, False, False, False, False, True, False])


def test_constant_windows_have_exact_zero_dispersion():
    x = np.concatenate([np.linspace(0.1, 0.7, 7), np.full(10, 0.3)])[:, None]
    assert K.rolling_std(x, 4)[-1, 0] == 0.0
    assert np.isnan(K.rolling_zscore(x, 4)[-1, 0])
    b = K.bollinger(x, 4)
    assert b.upper[-1, 0] == b.lower[-1, 0] == b.mid[-1, 0] == 0.3
    y = np.arange(17.0)
    assert np.isnan(K.rolling_corr(x, y, 4)[-1, 0])
    assert K.rolling_beta(x, y, 4)[-1, 0] == 0.0
    assert np.isnan(K.rolling_beta(y[:, None], x[:, 0], 4)[-1, 0])


@pytest.mark.parametrize("name", list(CASES))
def test_extreme_values_give_nan_not_infinity(name):
    """Overflowing intermediates (|x| ~ 1e200 .. 1e308) end up NaN, never +-inf or a wrong 0."""
    rng = np.random.default_rng(11)
    inputs, params = fixed_inputs(name)
    big = []
    for a in inputs:
        b = a.copy()
        m = rng.random(b.shape) < 0.3
        b[m] = rng.choice([1e200, -1e200, 1e308, -1.7e308], size=b.shape)[m]
        big.append(b)
    for out in run(name, tuple(big), params):
        assert not np.isinf(out).any()
    if name == "rolling_std":
        x = np.array([[1e300], [-1e300], [1e300]])
        assert np.isnan(K.rolling_std(x, 2)[1:]).all()


# ------------------------------------------------------------------- numerics on long series


def test_running_sums_stay_accurate_on_long_series():
    """No drift over 20k rows at a large level (the sums are recomputed every window)."""
    rng = np.random.default_rng(3)
    n, w = 20_000, 50
    x = 1e6 + np.cumsum(rng.standard_normal((n, 2)), axis=0)
    y = rng.standard_normal(n)
    win = np.lib.stride_tricks.sliding_window_view(x, w, axis=0)  # (n-w+1, 2, w)
    ywin = np.lib.stride_tricks.sliding_window_view(y, w)
    mean = win.mean(axis=-1)
    sd = win.std(axis=-1, ddof=1)
    assert_close(K.sma(x, w)[w - 1:], mean, rtol=1e-12, atol=0)
    assert_close(K.rolling_std(x, w)[w - 1:], sd, rtol=1e-9, atol=0)
    assert_close(K.rolling_zscore(x, w)[w - 1:], (x[w - 1:] - mean) / sd, rtol=1e-7, atol=1e-9)
    wts = np.arange(1, w + 1)
    assert_close(K.wma(x, w)[w - 1:], (win * wts).sum(-1) / wts.sum(), rtol=1e-12, atol=0)
    dx = win - mean[..., None]
    dy = (ywin - ywin.mean(-1, keepdims=True))[:, None, :]
    beta = (dx * dy).sum(-1) / (dy * dy).sum(-1)
    assert_close(K.rolling_beta(x, y, w)[w - 1:], beta, rtol=1e-9, atol=1e-12)
