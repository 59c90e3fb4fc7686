"""Your own strategy: a frozen dataclass subclass of ``pg.Strategy`` built from ``pitgrid.kernels``.

Run it as a script (a backtest, a point-in-time check and a small grid):

    python examples/custom_strategy.py

or from a run config, which imports it from the config's folder:

    [strategy]
    name = "custom_strategy:Breakout"
    params = { window = [20, 55], exit_window = 20 }
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

import pitgrid as pg
from pitgrid import kernels as K


@dataclass(frozen=True, kw_only=True)
class Breakout(pg.Strategy):
    """Enter on a new ``window``-bar closing high; exit below the ``exit_window``-bar EMA of the close.

    Example:
        >>> Breakout(window=55, exit_window=20).params()["window"]
        55
    """

    window: int = 55
    exit_window: int = 20
    weight: float = 0.05
    # the features depend on these only, so a grid over ``weight`` computes them once
    feature_params: ClassVar[tuple[str, ...]] = ("window", "exit_window")

    def __post_init__(self) -> None:
        if self.window < 2 or self.exit_window < 1:
            raise ValueError(f"need window >= 2 and exit_window >= 1, "
                             f"got {self.window}, {self.exit_window}")
        if not 0 < self.weight <= 1:
            raise ValueError(f"weight must be in (0, 1], got {self.weight}")

    # the rule compares this bar with the one before: the step driver hands it two rows
    intent_rows: ClassVar[int | None] = 2

    def features(self, data: pg.FeatureData) -> dict[str, np.ndarray]:
        # split-adjusted as of each bar: a split must not look like a breakdown; library
        # kernels and arithmetic only, so the step driver runs these as streams
        close = data.adjusted("close")
        return {"close": close, "high": K.rolling_max(close, self.window),
                "trend": K.ema(close, self.exit_window)}

    def intents(self, data: pg.FeatureData, f: dict[str, np.ndarray]) -> pg.Intents:
        close, high = f["close"], f["high"]
        # a new high beats the high of the bars before t; comparisons with NaN (warm-up,
        # missing bars) are False: no signal
        entries = np.zeros(close.shape, dtype=bool)
        entries[1:] = close[1:] > high[:-1]
        return pg.Intents(entries=entries, exits=close < f["trend"])

    def settings(self) -> dict[str, Any]:
        return {"size": "percent", "size_value": self.weight}


def main() -> None:
    market = pg.MarketData(pg.synthetic_prices(1260, 100, seed=7))
    config = {"fill": "next_open", "fees_bps": 10, "slippage_bps": 5}
    strategy = Breakout(window=55, exit_window=20)

    res = pg.backtest(market, strategy, config)
    print(res.summary().select("total_return", "annual_return", "sharpe", "max_drawdown",
                               "trades", "fill"))

    # truncating or scrambling the future must not change a single past decision
    print("point-in-time safe:", pg.check_point_in_time(market, strategy, config, cutoffs=3).ok)

    g = pg.grid(market, strategy, {"window": [20, 55, 100], "exit_window": [10, 20]},
                config=config, progress=False)
    print(g.best("sharpe", 3).select("window", "exit_window", "sharpe", "annual_return"))


if __name__ == "__main__":
    main()
