"""The compiled equity metrics against a slow, obviously correct numpy reference."""
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pitgrid.engine.metrics import compute_metrics


def reference_metrics(equity: np.ndarray, initial: float, bpy: float = 252.0) -> dict:
    e = [initial] + list(equity)
    r = np.array([e[i] / e[i - 1] - 1 for i in range(1, len(e))])
    n = len(r)
    total = equity[-1] / initial - 1
    annual = (1 + total) ** (bpy / n) - 1 if total > -1 else -1.0
    sd = np.std(r, ddof=1) if n > 1 else math.nan
    down = math.sqrt(np.mean(np.minimum(r, 0) ** 2))
    peak, mdd, longest, start = initial, 0.0, 0, None
    for t, v in enumerate(equity):
        if v >= peak:
            peak = v
            if start is not None:
                longest = max(longest, t - start)
            start = None
        else:
            start = t if start is None else start
            mdd = max(mdd, 1 - v / peak)
    if start is not None:
        longest = max(longest, n - start)
    srt = np.sort(r)

    def var_cvar(level):
        k = max(1, math.ceil(n * (1 - level) - 1e-9))
        return -srt[k - 1], -srt[:k].mean()

    losses = -srt[srt < 0]
    k = int(math.floor(math.sqrt(len(losses))))
    if k >= 2 and len(losses) > k:
        s = sum(math.log(losses[i] / losses[k]) for i in range(k))
        hill = k / s if s > 0 else math.nan
    else:
        hill = math.nan
    v95, c95 = var_cvar(0.95)
    v99, c99 = var_cvar(0.99)
    return {
        "total_return": total, "annual_return": annual, "volatility": sd * math.sqrt(bpy),
        "sharpe": r.mean() / sd * math.sqrt(bpy) if sd * sd > 1e-24 else math.nan,
        "sortino": r.mean() / down * math.sqrt(bpy) if down > 0 else math.nan,
        "calmar": annual / mdd if mdd > 0 else math.nan,
        "max_drawdown": mdd, "max_drawdown_duration": longest,
        "var_95": v95, "cvar_95": c95, "var_99": v99, "cvar_99": c99, "tail_index": hill,
    }


@settings(max_examples=150, deadline=None)
@given(arrays(np.float64, st.integers(2, 80), elements=st.floats(-0.2, 0.2)),
       st.floats(1e3, 1e6))
def test_equity_metrics_match_reference(rets, initial):
    equity = initial * np.cumprod(1 + rets)
    got = compute_metrics(equity[None, :], np.array([initial])).row(0, named=True)
    want = reference_metrics(equity, initial)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-9, atol=1e-12, err_msg=name)


def test_metrics_of_many_rows_equal_rows_one_by_one():
    rng = np.random.default_rng(3)
    equity = 100.0 * np.cumprod(1 + rng.normal(0, 0.01, (5, 300)), axis=1)
    together = compute_metrics(equity, np.full(5, 100.0))
    for i in range(5):
        alone = compute_metrics(equity[i:i + 1], np.array([100.0]))
        assert together[i].equals(alone)
