"""check_point_in_time passes every shipped strategy and catches three planted leaks."""
import pytest

import pitgrid as pg

from strategies_for_tests import (SHIPPED, BackAdjustedLevel, CentredAverage, EventTimeReader,
                                  market_with_everything)


@pytest.fixture(scope="module")
def market():
    return market_with_everything()


@pytest.mark.parametrize("strategy", SHIPPED, ids=lambda s: s.name)
@pytest.mark.parametrize("fill", ["close", "next_open"])
def test_shipped_strategies_are_point_in_time(market, strategy, fill):
    report = pg.check_point_in_time(market, strategy, {"fill": fill, "fees_bps": 10}, cutoffs=4)
    assert report.ok, str(report)


@pytest.mark.parametrize("leak", [CentredAverage(), EventTimeReader(field="sentiment", enter_above=0.5),
                                  BackAdjustedLevel()], ids=lambda s: s.name)
def test_planted_leaks_are_caught(market, leak):
    cutoffs = [market.time[i] for i in (60, 90, 110)]
    report = pg.check_point_in_time(market, leak, {"fill": "close"}, cutoffs=cutoffs)
    assert not report.ok
    d = report.differences[0]
    assert d.time <= d.cutoff
    assert "LEAK" in str(report)
