"""Knowledge time of reference data: a declared split or an announced index change is known
from its declaration, not only from its effective date."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import pitgrid as pg

DS = pg.synthetic_prices(40, 3, seed=4)
T = DS["time"].values
SYMS = [str(s) for s in DS["symbol"].values]


def _day(i: int) -> str:
    return np.datetime_as_string(T[i], "D")


def test_a_declared_split_is_known_from_its_declaration(tmp_path):
    actions = tmp_path / "actions.csv"
    actions.write_text(f"symbol,ex_date,split_ratio,declared\n{SYMS[0]},{_day(20)},2,{_day(12)}\n"
                       f"{SYMS[1]},{_day(25)},3,\n")
    market = pg.MarketData(DS, actions=pl.read_csv(actions))
    assert market.as_of(T[11]).actions.height == 0
    assert market.as_of(T[12]).actions["symbol"].to_list() == [SYMS[0]]     # declared
    assert market.as_of(T[25]).actions.height == 2                          # effective
    # the split still takes effect at its ex-date
    assert market["split_ratio"].values[20, 0] == 2.0 and market["split_ratio"].values[19, 0] == 1.0


def test_an_announced_index_change_is_known_before_it_takes_effect():
    universes = pl.DataFrame({
        "universe_id": ["u", "u"], "symbol": SYMS[:2],
        "start_date": [_day(0), _day(30)], "end_date": [_day(20), None],
        "announced": [None, _day(25)], "end_announced": [_day(15), None]})
    market = pg.MarketData(DS, universes=universes)
    at = lambda i: market.as_of(T[i]).universes  # noqa: E731
    assert at(14)["end"].to_list() == [None]                 # the exit is not known yet
    assert at(15)["end"].to_list()[0] is not None            # announced at 15, effective at 20
    assert SYMS[1] not in at(24)["symbol"].to_list()
    assert SYMS[1] in at(25)["symbol"].to_list()             # the join is known at 25
    mask = market.universe_mask("u").values
    assert mask[19, 0] and not mask[20, 0] and not mask[29, 1] and mask[30, 1]


@pytest.mark.parametrize("text, rule", [
    ("symbol,ex_date,split_ratio,declared\n{s},{a},2,{b}\n", "declared after its ex_date"),
])
def test_a_declaration_after_the_effective_date_is_refused(tmp_path, text, rule):
    path = tmp_path / "actions.csv"
    path.write_text(text.format(s=SYMS[0], a=_day(10), b=_day(12)))
    long = tmp_path / "bars.csv"
    pg.long_bars(DS).write_csv(long)
    with pytest.raises(pg.ValidationError, match=rule):
        pg.ingest(long, tmp_path / "s", actions=path, progress=False)


def test_an_announcement_after_the_start_is_refused(tmp_path):
    universes = pl.DataFrame({"universe_id": ["u"], "symbol": [SYMS[0]], "start_date": [_day(5)],
                              "end_date": [None], "announced": [_day(6)]})
    with pytest.raises(pg.ValidationError, match="announced after start_date"):
        pg.MarketData(DS, universes=universes)
