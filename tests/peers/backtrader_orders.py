"""The backtrader side of tests/test_orders_backtrader.py; runs in the peers environment.

    python tests/peers/backtrader_orders.py INPUT.npz CASES.json OUTPUT.npz

INPUT holds ``open``, ``high``, ``low``, ``close`` (time, symbol) and ``entries``,
``exits`` (bool) and, per case, the order levels ``<case>/entry`` and ``<case>/exit``
(NaN = market). Each symbol runs in its own Cerebro (one account per symbol): at a
bar's ``next()``, a flat symbol with an entry signal cancels its live order and
places a buy of ``size`` shares, a long one with an exit signal cancels its live
order and sells the position; the order is a ``Limit`` or ``Stop`` (kind of the
case) at the bar's level, good till cancelled, or a ``Market`` order (next open).
A ``trail`` case places a ``StopTrail`` sell (``trailpercent``) at the ``next()`` of
the bar the buy fills on, unless that bar's exit signal sells first: backtrader's
``cancel`` cannot reach an order submitted in the same bar (it is not pending yet),
so one placed from ``notify_order`` would outlive that exit and open a short.
Percentage commission, no slippage. OUTPUT: per case the fills (symbol, bar, side,
size, price, commission).
"""
from __future__ import annotations

import json
import sys

import backtrader as bt
import numpy as np
import pandas as pd


class Signals(bt.Strategy):
    params = (("entries", None), ("exits", None), ("entry_level", None), ("exit_level", None),
              ("kind", "limit"), ("size", 100), ("trail", 0.0), ("fills", None))

    def __init__(self):
        self.live = None
        self.arm_trail = False

    def _order(self, buy: bool, level: float):
        make = self.buy if buy else self.sell
        size = self.p.size if buy else self.position.size
        if not np.isfinite(level):
            return make(size=size, exectype=bt.Order.Market)
        exectype = bt.Order.Limit if self.p.kind == "limit" else bt.Order.Stop
        return make(size=size, exectype=exectype, price=float(level))

    def next(self):
        t = len(self.data) - 1
        pos = self.position.size
        if pos == 0 and self.p.entries[t]:
            if self.live is not None:
                self.cancel(self.live)
            self.live = self._order(True, self.p.entry_level[t])
        elif pos > 0 and self.p.exits[t]:
            if self.live is not None:
                self.cancel(self.live)
            self.live = self._order(False, self.p.exit_level[t])
        elif pos > 0 and self.arm_trail:
            self.live = self.sell(size=pos, exectype=bt.Order.StopTrail,
                                  trailpercent=self.p.trail)
        self.arm_trail = False

    def notify_order(self, order):
        if order.status == order.Completed:
            t = len(self.data) - 1
            self.p.fills.append((t, 1 if order.isbuy() else -1, abs(order.executed.size),
                                 order.executed.price, order.executed.comm))
            self.live = None
            self.arm_trail = order.isbuy() and self.p.trail > 0
        elif order.status in (order.Canceled, order.Margin, order.Rejected, order.Expired):
            if order is self.live:
                self.live = None


def run_symbol(data: dict, case: dict, s: int) -> list[tuple]:
    T = data["close"].shape[0]
    frame = pd.DataFrame({k: data[k][:, s] for k in ("open", "high", "low", "close")},
                         index=pd.bdate_range("2000-01-03", periods=T))
    frame["volume"] = 1e12
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    cerebro.broker.setcash(1e9)
    cerebro.broker.setcommission(commission=case["fees"])
    fills: list[tuple] = []
    name = case["name"]
    cerebro.addstrategy(Signals, entries=data["entries"][:, s], exits=data["exits"][:, s],
                        entry_level=data[f"{name}/entry"][:, s],
                        exit_level=data[f"{name}/exit"][:, s],
                        kind=case["kind"], size=case["size"], trail=case.get("trail", 0.0),
                        fills=fills)
    cerebro.run()
    return [(s, *f) for f in fills]


def main() -> int:
    data = dict(np.load(sys.argv[1]))
    cases = json.loads(open(sys.argv[2]).read())
    out = {}
    for case in cases:
        rows = [r for s in range(data["close"].shape[1]) for r in run_symbol(data, case, s)]
        out[case["name"]] = np.array(rows, dtype=np.float64).reshape(-1, 6)
    np.savez(sys.argv[3], **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
