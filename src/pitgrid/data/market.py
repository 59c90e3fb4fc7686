"""MarketData: the (time, symbol) bars plus reference data, and point-in-time views of them.

``MarketData`` holds an ``xarray.Dataset`` with dims ``(time, symbol)`` (``open high
low close volume valid split_ratio dividend`` and any extra fields) and the
reference tables as polars DataFrames: ``universes`` (membership intervals),
``actions`` (corporate actions), ``events`` and ``regimes`` (schemas in
``pitgrid.data.validate``). The time coordinate is the trading calendar.

``as_of(t)`` is the point-in-time door: a ``MarketView`` of bars at or before ``t``,
events whose ``knowledge_time <= t``, actions with ``ex_date <= t``, regimes at or
before ``t`` and membership as known at ``t`` (an interval ending after ``t`` shows as
open-ended). Its arrays are read-only.
"""
from __future__ import annotations

import datetime
import uuid
import warnings
from collections.abc import Callable, Mapping
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import xarray as xr

from pitgrid.data import store as _store
from pitgrid.data.checks import all_finite
from pitgrid.data.constant import constant_field
from pitgrid.data.read_once import ReadOnce, read_on_first_use, settled
from pitgrid.data.validate import (
    ACTIONS_SCHEMA,
    PRICE_FIELDS,
    IngestError,
    Source,
    normalize_actions,
    normalize_events,
    normalize_regimes,
    normalize_universes,
)
from pitgrid.data.validate import empty_table as _empty

TimeLike = str | np.datetime64 | pd.Timestamp | datetime.date
# a reference table, or what builds it when first read
TableSource = pl.DataFrame | Callable[[], pl.DataFrame]


def to_datetime64(t: TimeLike) -> np.datetime64:
    """``t`` (string, datetime, numpy or pandas time) as naive ``datetime64[ns]``; aware ones in UTC."""
    ts = pd.Timestamp(t)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_datetime64().astype("datetime64[ns]")


def _str_array(values: Any) -> np.ndarray:
    # via Python str: zarr hands back numpy StringDType, which does not cast to "<U" directly
    return np.array([str(v) for v in values], dtype=str)


def _frozen(values: np.ndarray) -> np.ndarray:
    view = values.view()
    view.flags.writeable = False
    return view


def _as_polars(table: Any) -> pl.DataFrame:
    if isinstance(table, pl.DataFrame):
        return table
    # column by column: pl.from_pandas needs pyarrow for string columns
    frame = pd.DataFrame(table)
    return pl.DataFrame([_polars_column(str(c), frame[c]) for c in frame.columns])


def _polars_column(name: str, column: pd.Series) -> pl.Series:
    if isinstance(column.dtype, pd.DatetimeTZDtype):  # instants: as naive UTC, like the bars
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    if column.dtype.kind in "biufmM":
        return pl.Series(name, column.to_numpy())
    # strings and objects; missing values (None, NaN, NaT) become nulls
    return pl.Series(name, [None if pd.isna(v) else v for v in column.tolist()])


class MarketData:
    """Bars on a ``(time, symbol)`` grid plus universes, corporate actions, events and regimes.

    ``ds`` needs ``open high low close volume``; missing ``valid`` defaults to
    ``isfinite(close)``, missing ``split_ratio``/``dividend`` are built from ``actions``
    (each action lands on the first bar at or after its ex-date), and a missing
    ``actions`` table is read off those arrays. ``universes`` is membership as
    intervals (``universe_id, symbol, start, end``) or snapshots
    (``date, universe_id, symbol``); tables may be polars or pandas frames and are
    validated like ingested files. Numpy-backed arrays are shared, not copied, and
    handed out read-only.

    Example:
        >>> import pitgrid as pg
        >>> ds = pg.synthetic_prices(20, 3, seed=0)
        >>> m = pg.MarketData(ds)
        >>> v = m.as_of(ds["time"].values[4])
        >>> v["close"].shape, bool(m.delist_bar.max() == -1)
        ((5, 3), True)
    """

    def __init__(
        self,
        ds: xr.Dataset,
        universes: Any = None,
        actions: Any = None,
        events: Any = None,
        regimes: Any = None,
    ) -> None:
        ds = _checked(ds)
        symbols = [str(s) for s in ds["symbol"].values] if any(
            t is not None for t in (universes, actions, events)) else []
        tables: dict[str, TableSource] = {}
        if universes is not None:
            tables["universes"] = normalize_universes(_as_polars(universes), Source("<universes>"), symbols)[0]
        if events is not None:
            tables["events"] = normalize_events(_as_polars(events), Source("<events>"), symbols)[0]
        if regimes is not None:
            tables["regimes"] = normalize_regimes(_as_polars(regimes), Source("<regimes>"))
        table = None
        if actions is not None:
            table = tables["actions"] = normalize_actions(_as_polars(actions), Source("<actions>"), symbols)[0]
        fields, facts = _derived_fields(ds, table)
        read_off = table is None and ("split_ratio" in ds or "dividend" in ds)
        ds = _frozen_dataset(ds, fields)
        if read_off:
            # read off the arrays when first asked for: most runs never ask
            tables["actions"] = partial(_actions_from_arrays, ds)
        self._init(ds, tables, None, facts=facts)

    def _init(
        self,
        ds: xr.Dataset,
        tables: Mapping[str, TableSource],
        fingerprint: str | None,
        store_path: Path | None = None,
        delist: np.ndarray | None = None,
        facts: Mapping[str, bool] | None = None,
    ) -> None:
        self._ds = ds
        self._delist = delist
        self._given_tables = dict(tables)
        self._built_tables: dict[str, pl.DataFrame] = {}
        self._fingerprint = fingerprint
        self._masks: dict[str, np.ndarray] = {}
        self._store_path = store_path
        self._facts = dict(facts) if facts is not None else None
        self._token = f"memory:{uuid.uuid4().hex}"

    @classmethod
    def _from_parts(
        cls,
        ds: xr.Dataset,
        tables: Mapping[str, TableSource],
        fingerprint: str | None = None,
        store_path: Path | None = None,
        delist: np.ndarray | None = None,
        facts: Mapping[str, bool] | None = None,
    ) -> MarketData:
        """Build from already-validated parts (a store, a truncation) without re-checking."""
        market = cls.__new__(cls)
        market._init(ds, tables, fingerprint, store_path, delist, facts)
        return market

    # ------------------------------------------------------------------ data

    def _table(self, name: str) -> pl.DataFrame:
        """Reference table ``name``, built on first use (an absent one empty): a run on
        bars alone reads few of them, or none."""
        if name not in self._built_tables:
            given = self._given_tables.get(name)
            self._built_tables[name] = (_empty(name) if given is None else given
                                        if isinstance(given, pl.DataFrame) else given())
        return self._built_tables[name]

    @property
    def _tables(self) -> dict[str, pl.DataFrame]:
        return {name: self._table(name) for name in _store.TABLE_NAMES}

    @property
    def ds(self) -> xr.Dataset:
        """The ``(time, symbol)`` Dataset; lazy when opened from a store (see ``load``)."""
        return self._ds

    def __getitem__(self, name: str) -> xr.DataArray:
        return self._ds[name]

    @property
    def store_path(self) -> Path | None:
        """The store this market was opened from, so workers can reopen it; None otherwise."""
        return self._store_path

    @cached_property
    def time(self) -> np.ndarray:
        """The trading calendar: bar times, ``datetime64[ns]``, strictly increasing."""
        return _frozen(np.asarray(self._ds.indexes["time"].values, "datetime64[ns]"))

    @cached_property
    def symbols(self) -> np.ndarray:
        """Symbols in column order."""
        values = self._ds.variables["symbol"].values
        # the labels are str already unless a store handed back another string type
        return _frozen(values if values.dtype.kind == "U" else _str_array(values))

    @property
    def fields(self) -> list[str]:
        """Names of the ``(time, symbol)`` arrays."""
        return list(self._ds.data_vars)

    @property
    def universes(self) -> pl.DataFrame:
        """Membership intervals ``universe_id, symbol, start, end`` (end null = still a member)."""
        return self._table("universes")

    @property
    def actions(self) -> pl.DataFrame:
        """Corporate actions ``symbol, ex_date, split_ratio, cash_dividend``."""
        return self._table("actions")

    @property
    def events(self) -> pl.DataFrame:
        """Events ``symbol, event_time, knowledge_time, field, value``, by knowledge time."""
        return self._table("events")

    @property
    def regimes(self) -> pl.DataFrame:
        """Market regimes ``time, regime``."""
        return self._table("regimes")

    @property
    def universe_ids(self) -> list[str]:
        """The universes present, sorted."""
        return sorted(self.universes["universe_id"].unique().to_list())

    @cached_property
    def delist_bar(self) -> np.ndarray:
        """Per symbol: the first bar after its last valid bar if its data end early, else -1.

        A symbol with no valid bar at all gets -1 (it never holds a position). A store
        records its delistings (see :mod:`pitgrid.data.grow`): a symbol whose bars stop in a
        store that grows is in a gap until a delisting is declared.
        """
        if self._delist is not None:
            return _frozen(self._delist)
        if self._facts is not None and self._facts.get("gapless"):
            # every bar valid: no symbol's data end early (and the mask need not be read)
            return _frozen(np.full(len(self._ds.indexes["symbol"]), -1, dtype=np.int64))
        return _frozen(delist_bars(np.asarray(self._ds["valid"].values, dtype=bool)))

    def load(self) -> MarketData:
        """This market with its arrays in memory (read-only). A store opened lazily is read
        field by field on first use, each field once: a run that needs only the close
        never reads the other fields.

        Example:
            >>> import pitgrid as pg
            >>> m = pg.open_market("prices.pitgrid").load()       # doctest: +SKIP
            >>> m["close"].values.flags.writeable                  # doctest: +SKIP
            False
        """
        if settled(self._ds):
            return self
        return MarketData._from_parts(
            _read_on_first_use(self._ds), self._tables, self._fingerprint, self._store_path,
            self._delist, self._facts,
        )

    # ------------------------------------------------------------------ point in time

    def index_of(self, t: TimeLike) -> int:
        """Index of the last bar at or before ``t``; ValueError when ``t`` is outside the data.

        Example:
            >>> import pitgrid as pg
            >>> pg.MarketData(pg.synthetic_prices(10, 1)).index_of("2010-01-09")  # a Saturday
            4
        """
        when = to_datetime64(t)
        time = self.time
        if len(time) == 0 or when < time[0] or when > time[-1]:
            span = f"{pd.Timestamp(time[0])} .. {pd.Timestamp(time[-1])}" if len(time) else "empty"
            raise ValueError(f"t={pd.Timestamp(when)} is outside the data's time range {span}")
        return int(np.searchsorted(time, when, side="right")) - 1

    def as_of(self, t: TimeLike) -> MarketView:
        """Read-only view of everything known at ``t``: bars <= t, events known <= t.

        The first call on a lazily opened store loads it into memory once.

        Example:
            >>> import pitgrid as pg
            >>> m = pg.MarketData(pg.synthetic_prices(10, 2))
            >>> v = m.as_of("2010-01-06")
            >>> str(v.time[-1])[:10], v.array("close").flags.writeable
            ('2010-01-06', False)
        """
        when = to_datetime64(t)
        index = self.index_of(when)
        if not settled(self._ds):
            # loading is a cache: same data, so this market may keep it (a field read on
            # first use, a store's or a constant, is one already)
            self._ds = _frozen_dataset(self._ds.compute())
        return MarketView(self, when, index)

    def truncate(self, t: TimeLike) -> MarketData:
        """This market as it was known at ``t``: nothing after ``t`` survives (for leak tests).

        Example:
            >>> import pitgrid as pg
            >>> m = pg.MarketData(pg.synthetic_prices(10, 2))
            >>> len(m.truncate("2010-01-06").time)
            3
        """
        when = to_datetime64(t)
        index = self.index_of(when)
        ds = self._ds.isel(time=slice(0, index + 1))
        # a part of gapless data has no gap, and no action where the whole has none
        facts = dict(self.facts) if self.facts["gapless"] else None
        market = MarketData._from_parts(ds, known_tables(self._tables, when), facts=facts)
        market._token = f"{self.cache_key()}:upto:{index}"  # the same cut of the same data
        # a delisting is a fact from the day the data end; a symbol merely in a gap at
        # ``t`` has not delisted, though its truncated data would look as if it had
        market.__dict__["delist_bar"] = known_delistings(self.delist_bar, index)
        return market

    def universe_mask(self, universe_id: str) -> xr.DataArray:
        """Bool ``(time, symbol)``: member of ``universe_id`` at each bar (``start <= t < end``).

        Example:
            >>> import pitgrid as pg, polars as pl
            >>> ds = pg.synthetic_prices(5, 2)
            >>> u = pl.DataFrame({"universe_id": ["u"], "symbol": ["S0001"],
            ...                   "start_date": ["2010-01-06"], "end_date": [None]})
            >>> pg.MarketData(ds, universes=u).universe_mask("u").values[:, 1].tolist()
            [False, False, True, True, True]
        """
        if universe_id not in self._masks:
            if universe_id not in self.universe_ids:
                raise KeyError(f"no universe {universe_id!r}; have {self.universe_ids}")
            rows = self.universes.filter(pl.col("universe_id") == universe_id)
            self._masks[universe_id] = _frozen(membership_mask(rows, self.time, list(self.symbols)))
        return xr.DataArray(
            self._masks[universe_id], dims=_store.DIMS,
            coords={"time": self._ds["time"], "symbol": self._ds["symbol"]}, name=universe_id,
        )

    @property
    def facts(self) -> dict[str, bool]:
        """What a run may take as known instead of checking every cell (``gapless``,
        ``has_actions``; see :func:`pitgrid.data.store.data_facts`): read from the store's
        manifest, where ingest recorded them, else worked out once on first use.

        Example:
            >>> import pitgrid as pg
            >>> pg.MarketData(pg.synthetic_prices(10, 2)).facts["gapless"]
            True
        """
        if self._facts is None or any(name not in self._facts for name in _store.FACTS):
            # what building the market did not learn on the way is worked out now
            self._facts = _store.data_facts(self.fields, lambda name: self._ds[name].values,
                                             known=self._facts)
        return self._facts

    def cache_key(self) -> str:
        """A key for caches of what is computed from this market's data: the fingerprint
        when it is known (a store records it at ingest), else a token of this object, so
        an in-memory market is never hashed to be cached.

        Example:
            >>> import pitgrid as pg
            >>> m = pg.MarketData(pg.synthetic_prices(10, 2))
            >>> m.cache_key() == m.cache_key(), m.cache_key().startswith("memory:")
            (True, True)
        """
        return self._fingerprint or self._token

    def fingerprint(self) -> str:
        """Stable hex digest of the arrays, coordinates and reference tables (not attributes).

        Example:
            >>> import pitgrid as pg
            >>> a = pg.MarketData(pg.synthetic_prices(10, 2)).fingerprint()
            >>> a == pg.MarketData(pg.synthetic_prices(10, 2)).fingerprint(), len(a)
            (True, 64)
        """
        if self._fingerprint is None:
            self._fingerprint = _store.data_fingerprint(
                self.time, list(self.symbols), self.fields,
                lambda name: self._ds[name].values, self._tables,
            )
        return self._fingerprint

    def __repr__(self) -> str:
        time = self._ds.indexes["time"]
        span = f"{time[0]} .. {time[-1]}" if len(time) else "empty"
        counts = ", ".join(f"{n}={len(t)}" for n, t in self._tables.items())
        return (f"MarketData({len(time)} bars x {self._ds.sizes['symbol']} symbols, {span}; "
                f"fields={self.fields}; {counts})")


class MarketView:
    """What is known at ``t``: read-only bars up to bar ``index`` and the tables known by then.

    ``view["close"]`` is a read-only DataArray; ``view.array("close")`` the bare
    read-only numpy block ``(index + 1, n_symbols)``, the cheap path for a step loop.
    """

    def __init__(self, market: MarketData, t: np.datetime64, index: int) -> None:
        self._market = market
        self.t = t
        self.index = index

    @cached_property
    def ds(self) -> xr.Dataset:
        """The bars ``time <= t`` as a Dataset whose arrays are read-only views."""
        return self._market.ds.isel(time=slice(0, self.index + 1))

    def __getitem__(self, name: str) -> xr.DataArray:
        return self.ds[name]

    def array(self, name: str) -> np.ndarray:
        """Read-only numpy view of field ``name`` for bars ``0..index``."""
        return self._market.ds[name].data[: self.index + 1]

    @property
    def time(self) -> np.ndarray:
        return self._market.time[: self.index + 1]

    @property
    def symbols(self) -> np.ndarray:
        return self._market.symbols

    @cached_property
    def _tables(self) -> dict[str, pl.DataFrame]:
        return known_tables(self._market._tables, self.t)

    @property
    def events(self) -> pl.DataFrame:
        """Events with ``knowledge_time <= t`` (their ``event_time`` may be later: scheduled)."""
        return self._tables["events"]

    @property
    def actions(self) -> pl.DataFrame:
        return self._tables["actions"]

    @property
    def universes(self) -> pl.DataFrame:
        """Intervals started by ``t``; an end after ``t`` is not known yet and shows as null."""
        return self._tables["universes"]

    @property
    def regimes(self) -> pl.DataFrame:
        return self._tables["regimes"]

    def universe_mask(self, universe_id: str) -> xr.DataArray:
        """Membership rows up to ``t`` (each row only depends on what is known at that bar)."""
        return self._market.universe_mask(universe_id).isel(time=slice(0, self.index + 1))

    @cached_property
    def delist_bar(self) -> np.ndarray:
        """The delistings known at ``t``: those at or before bar ``index`` (others -1)."""
        return known_delistings(self._market.delist_bar, self.index)

    def __repr__(self) -> str:
        return f"MarketView(t={self.t}, bars=0..{self.index}, symbols={len(self.symbols)})"


def open_market(store: str | Path, chunks: Any = None) -> MarketData:
    """Open an ingested store lazily: arrays are read when first used.

    ``chunks`` goes to ``xarray.open_zarr``: ``None`` (default) reads without dask,
    ``{}`` gives dask arrays chunked like the store (blocks of symbols).

    Example:
        >>> import pitgrid as pg
        >>> market = pg.open_market("prices.pitgrid")       # doctest: +SKIP
        >>> market.as_of("2020-03-20")["close"]             # doctest: +SKIP
    """
    path = Path(store)
    if not _store.is_store(path):
        raise IngestError(f"{path} is not a pitgrid store (no {_store.TABLES_DIR}/{_store.MANIFEST})")
    ds = xr.open_zarr(path, consolidated=True, chunks=chunks)
    ds = ds.assign_coords(
        time=ds.indexes["time"].values.astype("datetime64[ns]"),
        symbol=_str_array(ds["symbol"].values),
    )
    tables = _store.read_tables(path)
    manifest = _store.read_manifest(path)
    recorded = manifest.get("delistings")
    delist = None if recorded is None else recorded_delist_bars(
        recorded, ds.indexes["time"].values.astype("datetime64[ns]"), ds["symbol"].values)
    return MarketData._from_parts(ds, tables, manifest.get("fingerprint"), path, delist,
                                  manifest.get("facts"))


def recorded_delist_bars(delistings: Mapping[str, str], time: np.ndarray, symbols: Any) -> np.ndarray:
    """Per symbol, the bar of its recorded delisting (-1: none, or after the last bar)."""
    out = np.full(len(symbols), -1, dtype=np.int64)
    col = {str(s): i for i, s in enumerate(symbols)}
    for symbol, when in delistings.items():
        if symbol in col:
            bar = int(np.searchsorted(time, np.datetime64(when, "ns"), side="left"))
            if bar < len(time):
                out[col[symbol]] = bar
    return out


# ---------------------------------------------------------------------- helpers


class LookAheadFieldWarning(UserWarning):
    """A field that holds the future by how it is made was dropped (see ``LOOKAHEAD_FIELDS``)."""


# a vendor's back-adjusted close divides each bar by the splits and dividends after it
LOOKAHEAD_FIELDS = frozenset({"adjusted_close", "adj_close", "adjclose"})


def _checked(ds: xr.Dataset) -> xr.Dataset:
    dropped = [str(n) for n in ds.data_vars if str(n).lower() in LOOKAHEAD_FIELDS]
    if dropped:
        # as ingest drops them: safe by construction, whatever reads the market later
        warnings.warn(f"MarketData: dropped {', '.join(map(repr, dropped))}, a vendor's "
                      "back-adjusted close: each bar is adjusted by the splits and dividends "
                      "after it (a look-ahead); data.adjusted('close') adjusts as of each bar",
                      LookAheadFieldWarning, stacklevel=3)
        ds = ds.drop_vars(dropped)
    missing = [f for f in PRICE_FIELDS if f not in ds.data_vars]
    if missing or set(ds.dims) != set(_store.DIMS):
        raise ValueError(f"MarketData needs dims {_store.DIMS} and fields {PRICE_FIELDS}; "
                         f"got dims {tuple(ds.dims)}, missing {missing}")
    if any(v.dims == _store.DIMS[::-1] for v in ds.variables.values()):
        ds = ds.transpose(*_store.DIMS)
    time = ds.indexes["time"].values.astype("datetime64[ns]")
    if len(time) > 1 and not (np.diff(time) > np.timedelta64(0, "ns")).all():
        raise ValueError("MarketData: time must be strictly increasing")
    symbols = ds["symbol"].values
    if symbols.dtype.kind != "U":
        symbols = _str_array(symbols)
    if len(set(symbols.tolist())) != len(symbols):
        raise ValueError("MarketData: symbols must be unique")
    if ds["time"].dtype != time.dtype or ds["symbol"].dtype != symbols.dtype:
        # relabelled only when they are not yet what a market holds: new indexes cost more
        # than the rest of the checks
        ds = ds.assign_coords(time=time, symbol=symbols)
    return ds


def _in_memory_field(var: xr.Variable) -> bool:
    # numpy, or a store's field already read (or read now, once, as a market reads it)
    return isinstance(var._data, (np.ndarray, ReadOnce))


def _derived_fields(ds: xr.Dataset, actions: pl.DataFrame | None
                    ) -> tuple[dict[str, xr.Variable], dict[str, bool]]:
    """The fields a market adds where ``ds`` lacks them, and the facts (see
    :attr:`MarketData.facts`) learnt on the way rather than in a pass of their own.

    ``valid`` is ``isfinite(close)``; the pass that tells whether there is a gap also
    tells whether it is all True. ``split_ratio`` and ``dividend`` come from ``actions``.
    A field that holds one value everywhere (valid without a gap, no action) is
    allocated only if something reads it: a market that knows it has no gap and no
    action is seldom asked.
    """
    fields: dict[str, xr.Variable] = {}
    facts: dict[str, bool] = {}
    if "valid" not in ds:
        close, open_ = ds.variables["close"], ds.variables["open"]
        if not _in_memory_field(close):  # lazy (dask) stays lazy
            fields["valid"] = np.isfinite(ds["close"]).variable
        elif all_finite(close.values):
            fields["valid"] = constant_field(close.dims, close.shape, True, np.bool_)
            if _in_memory_field(open_):
                facts["gapless"] = all_finite(open_.values)
        else:
            fields["valid"] = xr.Variable(close.dims, np.isfinite(close.values))
            facts["gapless"] = False
    wanted = [n for n in ("split_ratio", "dividend") if n not in ds]
    if not wanted:
        return fields, facts
    if actions is None or actions.height == 0:
        shape = (ds.sizes["time"], ds.sizes["symbol"])
        for name in wanted:
            fields[name] = constant_field(_store.DIMS, shape, 1.0 if name == "split_ratio" else 0.0)
        if len(wanted) == 2:
            facts["has_actions"] = False
        return fields, facts
    ratio, cash = action_arrays(actions, ds["time"].values, [str(s) for s in ds["symbol"].values])
    for name, values in (("split_ratio", ratio), ("dividend", cash)):
        if name in wanted:
            fields[name] = xr.Variable(_store.DIMS, values)
    return fields, facts


def _numpy_backed(var: xr.DataArray) -> bool:
    # the private _data, because the public .data would read a lazily opened array
    return isinstance(var.variable._data, np.ndarray)


def _read_on_first_use(ds: xr.Dataset) -> xr.Dataset:
    """Fields of a lazily opened store read on first use, each once; anything else lazy
    (dask) computed now; all read-only."""
    ds, rest = read_on_first_use(ds)
    return ds.assign(_frozen_dataset(ds[rest].compute()).data_vars) if rest else ds


def _frozen_dataset(ds: xr.Dataset, added: Mapping[str, xr.Variable] | None = None) -> xr.Dataset:
    """Same Dataset with numpy-backed arrays swapped for read-only views (lazy ones
    untouched), ``added`` fields after its own, in one construction (each ``assign``
    merges and aligns the whole Dataset again)."""
    fields = {}
    for name, var in {**{n: ds.variables[n] for n in ds.data_vars}, **(added or {})}.items():
        if isinstance(var._data, np.ndarray):
            var = xr.Variable(var.dims, _frozen(var._data), var.attrs, var.encoding, fastpath=True)
        fields[name] = var
    out = xr.Dataset(fields, coords=ds.coords, attrs=ds.attrs)
    out.encoding = dict(ds.encoding)
    return out


def known_delistings(delist_bar: np.ndarray, index: int) -> np.ndarray:
    """``delist_bar`` as known at bar ``index``: later delistings are not known yet."""
    return _frozen(np.where((delist_bar >= 0) & (delist_bar <= index), delist_bar, -1).astype(np.int64))


def delist_bars(valid: np.ndarray) -> np.ndarray:
    """Per column of ``valid`` (time, symbol): first bar after the last valid one if the data end early.

    Example:
        >>> delist_bars(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]], bool)).tolist()
        [2, 1, -1]
    """
    n_time = valid.shape[0]
    out = np.full(valid.shape[1], -1, dtype=np.int64)
    # only a symbol whose last bar is invalid can have ended early: the backward search of
    # every column is most of the set-up of a large gapless run
    maybe = np.flatnonzero(~valid[-1]) if n_time else np.arange(0)
    if len(maybe):
        v = valid[:, maybe]
        last = n_time - 1 - np.argmax(v[::-1], axis=0)
        out[maybe] = np.where(v.any(axis=0), last + 1, -1)
    return out


def membership_mask(intervals: pl.DataFrame, time: np.ndarray, symbols: list[str]) -> np.ndarray:
    """Bool ``(time, symbol)``: True where some interval has ``start <= time < end``.

    Symbols not in ``symbols`` are ignored; overlapping intervals are a union.

    Example:
        >>> iv = pl.DataFrame({"symbol": ["A"], "start": [np.datetime64("2020-01-02", "ns")],
        ...                    "end": [np.datetime64("2020-01-04", "ns")]})
        >>> t = np.arange("2020-01-01", "2020-01-06", dtype="datetime64[D]").astype("datetime64[ns]")
        >>> membership_mask(iv, t, ["A"])[:, 0].tolist()
        [False, True, True, False, False]
    """
    col = {s: i for i, s in enumerate(symbols)}
    codes = np.array([col.get(s, -1) for s in intervals["symbol"].to_list()], dtype=np.int64)
    start = intervals["start"].cast(pl.Int64).to_numpy()
    end = intervals["end"].cast(pl.Int64).fill_null(np.iinfo(np.int64).max).to_numpy()
    ns = np.asarray(time, "datetime64[ns]").view(np.int64)
    keep = codes >= 0
    # +1 where an interval opens, -1 where it closes; a positive running count = member
    delta = np.zeros((len(ns) + 1, len(symbols)), dtype=np.int32)
    np.add.at(delta, (np.searchsorted(ns, start[keep], "left"), codes[keep]), 1)
    np.add.at(delta, (np.searchsorted(ns, end[keep], "left"), codes[keep]), -1)
    return np.cumsum(delta[:-1], axis=0) > 0


def action_arrays(
    actions: pl.DataFrame, time: np.ndarray, symbols: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``split_ratio`` (1 = none) and ``dividend`` (0 = none) on the ``(time, symbol)`` grid.

    Each action lands on the first bar at or after its ex-date; actions after the last
    bar stay in the table only; two actions landing on one bar compound.
    """
    col = {s: i for i, s in enumerate(symbols)}
    ns = np.asarray(time, "datetime64[ns]").view(np.int64)
    rows = np.searchsorted(ns, actions["ex_date"].cast(pl.Int64).to_numpy(), "left")
    cols = np.array([col.get(s, -1) for s in actions["symbol"].to_list()], dtype=np.int64)
    keep = (rows < len(ns)) & (cols >= 0)
    ratio = np.ones((len(ns), len(symbols)))
    cash = np.zeros((len(ns), len(symbols)))
    np.multiply.at(ratio, (rows[keep], cols[keep]), actions["split_ratio"].to_numpy()[keep])
    np.add.at(cash, (rows[keep], cols[keep]), actions["cash_dividend"].to_numpy()[keep])
    return ratio, cash


def _actions_from_arrays(ds: xr.Dataset) -> pl.DataFrame:
    ratio = np.asarray(ds["split_ratio"].values, dtype=float)
    cash = np.asarray(ds["dividend"].values, dtype=float)
    # NaN (no bar) is no action; only the few action cells go through nan_to_num below
    rows, cols = np.nonzero(((ratio != 1.0) & ~np.isnan(ratio)) | ((cash != 0.0) & ~np.isnan(cash)))
    symbols = _str_array(ds["symbol"].values)
    table = pl.DataFrame({
        "symbol": symbols[cols].tolist(),
        "ex_date": ds.indexes["time"].values[rows],
        "split_ratio": np.nan_to_num(ratio[rows, cols], nan=1.0),
        "cash_dividend": np.nan_to_num(cash[rows, cols]),
        "declared": [None] * len(rows),
    }, schema=ACTIONS_SCHEMA)
    return table.sort("ex_date", "symbol")


def known_tables(tables: Mapping[str, pl.DataFrame], t: np.datetime64) -> dict[str, pl.DataFrame]:
    """The reference tables as known at ``t``: rows dated after ``t`` dropped, future ends hidden."""
    when = pl.lit(t).cast(pl.Datetime("ns"))
    # a change is known from its announcement or declaration where the data give one,
    # else from its effective date
    universes = tables["universes"].filter(
        pl.coalesce("announced", "start") <= when
    ).with_columns(
        end=pl.when(pl.coalesce("end_announced", "end") <= when).then(pl.col("end")).otherwise(None),
        end_announced=pl.when(pl.coalesce("end_announced", "end") <= when)
        .then(pl.col("end_announced")).otherwise(None),
    )
    return {
        "universes": universes,
        "actions": tables["actions"].filter(pl.coalesce("declared", "ex_date") <= when),
        "events": tables["events"].filter(pl.col("knowledge_time") <= when),
        "regimes": tables["regimes"].filter(pl.col("time") <= when),
    }
