"""Streaming kernels: ``pitgrid.kernels.Stream`` against the batch kernels.

The batch kernel is the loop over the same one-row step, so a stream fed the rows
one by one must give the batch result bit for bit (``assert_array_equal``: NaN
positions included), and a stream restored from a saved state at any bar must
continue identically. Panels come with NaN gaps, late listings, delistings,
constant runs, huge and tiny levels and infinities. The moving sums' documented
error bound (docs/kernels.md) is checked against exact rational sums.
"""
from __future__ import annotations

import importlib
import inspect
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pitgrid.kernels as K
from pitgrid.kernels import Stream

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
LEVELS = (1e-9, 1.0, 100.0, 1e6, 1e12)


def make_panel(rng, n_time, n_sym, level, nan_p, inf_p):
    """Random-walk-ish columns at ``level`` with late listings, delistings, gaps and flat runs."""
    x = level * (1.0 + 0.01 * np.cumsum(rng.standard_normal((n_time, n_sym)), axis=0))
    for j in range(n_sym):
        kind = rng.integers(0, 5)
        a, b = sorted(rng.integers(0, n_time + 1, size=2))
        if kind == 0:
            x[:a, j] = np.nan  # late listing
        elif kind == 1:
            x[b:, j] = np.nan  # delisting
        elif kind == 2:
            x[a:b, j] = x[a, j] if a < n_time else 0.0  # constant run
        elif kind == 3:
            x[a:b, j] = np.nan  # gap
    x[rng.random(x.shape) < nan_p] = np.nan
    m = rng.random(x.shape) < inf_p
    x[m] = np.where(rng.random(x.shape) < 0.5, np.inf, -np.inf)[m]
    return np.ascontiguousarray(x)


@st.composite
def panels(draw):
    return dict(n_time=draw(st.integers(1, 70)), n_sym=draw(st.integers(1, 5)),
                level=draw(st.sampled_from(LEVELS)),
                nan_p=draw(st.sampled_from([0.0, 0.0, 0.05, 0.3])),
                inf_p=draw(st.sampled_from([0.0, 0.0, 0.02])),
                seed=draw(st.integers(0, 2**32 - 1)))


def inputs_for(name, spec):
    rng = np.random.default_rng(spec["seed"])
    args = (rng, spec["n_time"], spec["n_sym"], spec["level"], spec["nan_p"], spec["inf_p"])
    x = make_panel(*args)
    if name in ("rolling_corr", "rolling_beta"):
        y = make_panel(rng, spec["n_time"], 1, spec["level"], spec["nan_p"], spec["inf_p"])
        return x, np.ascontiguousarray(y[:, 0])
    if name in ("crossover", "crossunder", "crosses"):
        return x, make_panel(*args)
    if name == "atr":
        spread = np.abs(rng.standard_normal(x.shape)) * np.abs(x) * 0.01
        with np.errstate(invalid="ignore"):  # inf - inf: NaN, missing either way
            return x + spread, x - spread, x
    return (x,)


def draw_params(name, draw):
    w = draw(st.integers(1, 12), label="window")
    if name in ("rolling_std", "rolling_zscore"):
        w = max(w, 2)
        return {"window": w, "ddof": draw(st.integers(0, 1))}
    if name == "bollinger":
        return {"window": w, "k": draw(st.sampled_from([0.5, 2.0])),
                "ddof": draw(st.integers(0, min(1, w - 1)))}
    if name == "macd":
        fast = draw(st.integers(1, 6))
        return {"fast": fast, "slow": draw(st.integers(fast + 1, 12)),
                "signal": draw(st.integers(1, 6))}
    if name == "cs_rank":
        return {"pct": draw(st.booleans())}
    if name == "cs_zscore":
        return {"ddof": draw(st.integers(0, 2))}
    wrapper = inspect.signature(getattr(K, name)).parameters
    return {"window": w} if "window" in wrapper else {}


def as_tuple(r):
    return tuple(r) if isinstance(r, tuple) else (r,)


def run_stream(s, inputs, rows):
    """Feed rows ``rows`` of the inputs; stack the (copied) outputs."""
    got = []
    for t in rows:
        got.append(tuple(o.copy() for o in as_tuple(s.update(*(a[t] for a in inputs)))))
    return got


@pytest.mark.parametrize("name", K.KERNELS)
@SETTINGS
@given(data=st.data())
def test_stream_equals_batch_and_resumes_from_saved_state(name, data, tmp_path_factory):
    spec = data.draw(panels(), label="panel")
    params = draw_params(name, data.draw)
    inputs = inputs_for(name, spec)
    batch = as_tuple(getattr(K, name)(*inputs, **params))
    n_time, n_sym = spec["n_time"], spec["n_sym"]

    s = Stream(name, n_sym, **params)
    got = run_stream(s, inputs, range(n_time))
    assert s.n_updates == n_time
    for i, b in enumerate(batch):
        np.testing.assert_array_equal(np.stack([g[i] for g in got]), b)
        assert np.stack([g[i] for g in got]).dtype == b.dtype

    # save at a random bar (through np.savez, no pickle), restore, continue
    cut = data.draw(st.integers(0, n_time), label="cut")
    s1 = Stream(name, n_sym, **params)
    run_stream(s1, inputs, range(cut))
    path = tmp_path_factory.mktemp("state") / "s.npz"
    np.savez(path, **s1.state())
    with np.load(path, allow_pickle=False) as f:
        saved = dict(f)
    s2 = Stream.from_state(name, saved)
    assert s2.n_updates == cut and s2.params == s1.params
    rest = run_stream(s2, inputs, range(cut, n_time))
    for i, b in enumerate(batch):
        if rest:
            np.testing.assert_array_equal(np.stack([g[i] for g in rest]), b[cut:])
    # the saved copy is not tied to the stream it came from
    s3 = Stream(name, n_sym, **params)
    s3.load_state(saved)
    assert s3.n_updates == cut

    # blocks of random sizes: advance is update on each row of the block
    edges = sorted(set(data.draw(st.lists(st.integers(1, max(n_time - 1, 1)), max_size=4),
                                 label="block edges")) | {0, n_time})
    s4 = Stream(name, n_sym, **params)
    blocks = [as_tuple(s4.advance(*(a[lo:hi] for a in inputs))) for lo, hi in zip(edges, edges[1:])
              if hi > lo]
    assert s4.n_updates == n_time
    for i, b in enumerate(batch):
        np.testing.assert_array_equal(np.concatenate([blk[i] for blk in blocks]), b)


def test_stream_parameters_follow_the_batch_wrappers():
    for name in K.KERNELS:
        s = Stream(name, 3, **({"window": 5} if "window" in inspect.signature(
            getattr(K, name)).parameters and inspect.signature(getattr(K, name)).parameters[
            "window"].default is inspect.Parameter.empty else {}))
        wrapper = inspect.signature(getattr(K, name)).parameters
        inputs = [p for p in wrapper if p not in s.params
                  and wrapper[p].kind is not inspect.Parameter.KEYWORD_ONLY]
        assert list(s.params) == [p for p in wrapper if p in s.params]
        assert len(inputs) == s._n_inputs
    assert Stream("bollinger", 2).params == {"window": 20, "k": 2.0, "ddof": 0}
    assert Stream("macd", 2).params == {"fast": 12, "slow": 26, "signal": 9}
    with pytest.raises(TypeError):
        Stream("sma", 2)  # window is required, as in sma(x, window)
    with pytest.raises(TypeError):
        Stream("sma", 2, window=3, span=4)
    with pytest.raises(ValueError, match="fast"):
        Stream("macd", 2, fast=26, slow=12)
    with pytest.raises(ValueError, match="ddof"):
        Stream("rolling_std", 2, window=1)
    with pytest.raises(ValueError, match="unknown"):
        Stream("nope", 2)


def test_update_checks_rows_and_returns_preallocated_outputs():
    s = K.stream("macd", 3, fast=2, slow=3, signal=2)
    r1 = s.update(np.array([1.0, 2.0, 3.0]))
    r2 = s.update([2.0, 3.0, 4.0])
    assert isinstance(r1, K.MACD) and r1.line is r2.line  # owned by the stream, reused
    with pytest.raises(ValueError, match="shape"):
        s.update(np.ones(4))
    with pytest.raises(TypeError):
        s.update(np.ones(3), np.ones(3))
    c = Stream("rolling_beta", 2, window=3)
    assert c.update(np.ones(2), 0.5).shape == (2,)
    assert Stream("crossover", 2).update(np.ones(2), np.zeros(2)).dtype == np.bool_


def test_load_state_refuses_a_foreign_state():
    a = Stream("sma", 3, window=4)
    a.update(np.ones(3))
    st_a = a.state()
    with pytest.raises(ValueError, match="window"):
        Stream("sma", 3, window=5).load_state(st_a)
    with pytest.raises(ValueError, match="symbols"):
        Stream("sma", 4, window=4).load_state(st_a)
    with pytest.raises(ValueError, match="keys"):
        Stream("ema", 3, window=4).load_state(st_a)
    bad = dict(st_a, ring=st_a["ring"].astype(np.float32))
    with pytest.raises(ValueError, match="dtype"):
        Stream("sma", 3, window=4).load_state(bad)
    st_a["ring"][:] = 7.0  # state() hands out copies
    assert not (a.state()["ring"] == 7.0).all()


def test_cross_sectional_streams_are_the_kernel_on_one_row():
    x = np.array([[3.0, 1.0, np.nan, 2.0], [1.0, 1.0, 5.0, np.nan]])
    s = Stream("cs_rank", 4, pct=False)
    for t in range(2):
        np.testing.assert_array_equal(s.update(x[t]), K.cs_rank(x, pct=False)[t])
    assert set(s.state()) == {"n_updates", "n_symbols", "param_pct"}


def test_steps_are_the_batch_kernels_loop():
    """Every non-row-local kernel has a jitted ``name_step_nb`` and ``name_state``; its batch
    kernel is its block function from bar 0, and the block function loops over the step."""
    stream_mod = importlib.import_module("pitgrid.kernels.stream")  # K.stream is the function
    for name in K.KERNELS:
        mod = stream_mod._SPECS[name].module
        if name in ("cs_rank", "cs_zscore"):
            continue
        for kind in ("_step_nb", "_block_nb"):
            fn = getattr(mod, name + kind)
            assert fn.targetoptions.get("nogil") and type(fn._cache).__name__ == "FunctionCache"
        assert name + "_block_nb(0, " in inspect.getsource(getattr(mod, name + "_nb").py_func)
        block = inspect.getsource(getattr(mod, name + "_block_nb").py_func)
        assert "for i in range" in block and name + "_step_nb(t0 + i, " in block


# ------------------------------------------------------------------ moving sum error bound

U = 2.0 ** -53  # unit roundoff of float64


def sma_bound(x, t, w, mean):
    """The documented bound (docs/kernels.md, "Moving sums"): ``u * ((4w + 21) * R + |mean|)``,
    ``R`` the range of the present values in rows ``t-5w+1 .. t``. The factor covers the
    second-order terms, below 1e-9 of the bound for these windows."""
    seg = x[max(0, t - 5 * w + 1):t + 1]
    seg = seg[np.isfinite(seg)]
    return U * ((4 * w + 21) * (seg.max() - seg.min()) + abs(mean)) * (1 + 1e-9)


def exact_mean(win):
    return sum(Fraction(float(v)) for v in win) / len(win)


def assert_sma_within_bound(x: np.ndarray, w: int) -> None:
    """Every window of ``K.sma(x, w)``: NaN where a bar is missing, else within the
    documented bound of the exact mean (fractions)."""
    got = K.sma(x, w)
    for j in range(x.shape[1]):
        for t in range(w - 1, x.shape[0]):
            win = x[t - w + 1:t + 1, j]
            if not np.isfinite(win).all():
                assert np.isnan(got[t, j])
                continue
            exact = exact_mean(win)
            err = float(abs(Fraction(float(got[t, j])) - exact))
            assert err <= sma_bound(x[:, j], t, w, float(exact)), (t, j, err)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), w=st.integers(1, 30),
       level=st.sampled_from([1.0, 1e6, 1e12, 1e-9]),
       vol=st.sampled_from([1e-6, 1e-2, 1.0, 100.0]), nan_p=st.sampled_from([0.0, 0.02]))
def test_sma_error_bound_against_exact_sums(seed, w, level, vol, nan_p):
    rng = np.random.default_rng(seed)
    n = 300
    x = level * (1.0 + vol * np.cumsum(rng.standard_normal((n, 2)), axis=0) / np.sqrt(n))
    x[rng.random(x.shape) < nan_p] = np.nan
    assert_sma_within_bound(x, w)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), w=st.integers(1, 24),
       base=st.sampled_from([1e-3, 1.0, 1e8]), spike=st.sampled_from([1e6, 1e12, 1e15]),
       spike_p=st.sampled_from([0.01, 0.1]), nan_p=st.sampled_from([0.0, 0.03]))
def test_sma_error_bound_with_spikes_and_sign_changes(seed, w, base, spike, spike_p, nan_p):
    """Adversarial magnitudes: values that change sign around zero, isolated spikes up to
    1e15 (where float64 holds integers only) entering and leaving windows of small values,
    and gaps; the bound follows the local range, so it must hold on every window."""
    rng = np.random.default_rng(seed)
    n = 240
    x = base * rng.standard_normal((n, 2))
    hit = rng.random(x.shape) < spike_p
    x[hit] += spike * rng.choice([-1.0, 1.0], size=int(hit.sum())) * rng.uniform(0.5, 1.0, int(hit.sum()))
    x[rng.random(x.shape) < nan_p] = np.nan
    assert_sma_within_bound(x, w)


def test_running_sum_does_not_drift_on_a_long_series():
    """200k rows at level 1e9 with unit moves: the error stays within the bound at the end."""
    rng = np.random.default_rng(4)
    n, w = 200_000, 64
    x = 1e9 + np.cumsum(rng.standard_normal(n))
    got = K.sma(x, w)
    for t in range(n - 1000, n):
        exact = exact_mean(x[t - w + 1:t + 1])
        err = float(abs(Fraction(float(got[t])) - exact))
        assert err <= sma_bound(x, t, w, float(exact))


def test_cross_sectional_streams_take_the_membership_row():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 5))
    member = rng.random((6, 5)) < 0.6
    for name, params in (("cs_rank", {"pct": False}), ("cs_zscore", {"ddof": 0})):
        s = Stream(name, 5, **params)
        batch = getattr(K, name)(x, **params, mask=member)
        for t in range(6):
            np.testing.assert_array_equal(s.update(x[t], mask=member[t]), batch[t])
    with pytest.raises(TypeError, match="mask"):
        Stream("sma", 5, window=2).update(x[0], mask=member[0])
