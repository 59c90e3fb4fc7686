"""The vectorbt side of tests/test_orders_vectorbt.py; runs in the peers environment.

    python tests/peers/vectorbt_stops.py INPUT.npz CASES.json OUTPUT.npz

INPUT holds ``open``, ``high``, ``low``, ``close`` (time, symbol) and ``entries``,
``exits`` (bool). Each case of CASES (``name``, ``sl_stop``, ``tp_stop``,
``sl_trail``) runs ``Portfolio.from_signals`` per column (one account per symbol),
10 bps fees, 5 bps slippage, all cash per entry, fills at the close, stops priced
from the order price (``stop_entry_price="price"``) and filled as market orders
(``stop_exit_price="stopmarket"``). OUTPUT gets, per case, the order records
(column, bar, size, price, fees, side) and the final value per column.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import vectorbt as vbt


def run(data, case: dict):
    T, S = data["close"].shape
    index = pd.RangeIndex(T)
    frame = {k: pd.DataFrame(data[k], index=index) for k in ("open", "high", "low", "close",
                                                             "entries", "exits")}
    trail = case["sl_trail"] > 0
    sl = case["sl_trail"] if trail else (case["sl_stop"] or np.nan)
    pf = vbt.Portfolio.from_signals(
        frame["close"], frame["entries"], frame["exits"], open=frame["open"],
        high=frame["high"], low=frame["low"], fees=0.001, slippage=0.0005, init_cash=100_000.0,
        size=np.inf, direction="longonly", sl_stop=sl,
        sl_trail=trail, tp_stop=case["tp_stop"] or np.nan, stop_entry_price="price",
        stop_exit_price="stopmarket", freq="1D")
    rec = pf.orders.values
    return rec, np.asarray(pf.value().iloc[-1].values, dtype=np.float64)


def main() -> int:
    data = dict(np.load(sys.argv[1]))
    cases = json.loads(open(sys.argv[2]).read())
    out = {}
    for case in cases:
        rec, final = run(data, case)
        name = case["name"]
        for field in ("col", "idx", "size", "price", "fees", "side"):
            out[f"{name}/{field}"] = np.asarray(rec[field])
        out[f"{name}/final"] = final
    np.savez(sys.argv[3], **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
