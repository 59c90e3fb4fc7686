"""Validation of bars and reference tables: bad data is refused, never repaired.

Every refusal is a ``ValidationError`` naming the file, the row (for CSV the 1-based
line number, header = line 1; for Parquet and in-memory tables the 1-based row),
the symbol and the rule. The per-row bar rules run in the compiled scan
``pitgrid._scan.scan_bars`` in one pass over all rows in file order, so the error
is always about the first offending row.

Bar rules, in the order they are checked per row: unparseable time, missing
symbol, duplicate ``(time, symbol)``, time not increasing within a symbol (in
file order; several files continue each other in the order given), mixed bar
frequency, non-finite or non-positive open/high/low/close, ``high < low``, open
or close outside ``[low, high]``, non-finite or negative volume. Gaps are not
errors. A time that reads as a date but lies outside what nanosecond times can hold
(1677-09-21 .. 2262-04-11) is refused as ``time out of range`` where an unparseable
one would be.

**Mixed bar frequency.** The data set's bar step is the most common positive gap
between consecutive bars of the same symbol. With a step of a day or more the
data are *daily*: every bar must have the same time of day (the most common one,
00:00 for plain dates). With a shorter step the data are *intraday*: every bar's
time of day must lie on the grid ``phase + k * step`` (``phase`` = the most common
time of day modulo the step, so 09:30-anchored hourly bars are fine) and a plain
date without a time of day is refused. Coarser bars that lie on the grid are
gaps, not errors. Text times are naive (no timezone suffix): ``YYYY-MM-DD`` or
``YYYY-MM-DD[ T]HH:MM[:SS[.fff]]``.

**Split ratios** carry vendor float noise (7.000007 for a 7-for-1, 1.49999925 for a
3-for-2). A ratio within a relative ``SPLIT_SNAP_TOLERANCE`` (1e-5), or within 5e-7
(the rounding of a ratio printed with six decimals: 0.028571 for 1-for-35), of a
simple fraction is replaced by that fraction: n-for-1 or 1-for-n with n up to 1000, or
m-for-n with m and n up to 100 (the fewest digits wins). Fractions with larger terms
lie closer together than the tolerance, so any ratio would match one of them:
a spin-off factor such as 1.068833 is kept as it is. Ratios near 1 are never
snapped to 1 (that would erase the action). ``normalize_actions`` returns each
snapped ratio with its raw value.

**Suspicious moves** are listed, not refused: a close-to-close move that no
recorded split or dividend explains (an unrecorded split, a spin-off), see
:func:`suspicious_moves`; ingest keeps the list in the store's manifest.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
import polars as pl

from pitgrid import _scan

NS_PER_DAY = 86_400_000_000_000

_DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M")
PRICE_FIELDS = ("open", "high", "low", "close", "volume")


class IngestError(ValueError):
    """Data that cannot be ingested: unreadable file, missing column, conflicting options."""


class ValidationError(IngestError):
    """A row breaks a data rule; ``file``, ``line``, ``symbol`` and ``rule`` say where and which.

    Example:
        >>> err = ValidationError("p.csv", "line", 7, "AAPL", "high < low", "high=1.0, low=2.0")
        >>> str(err)
        "p.csv, line 7, symbol 'AAPL': high < low (high=1.0, low=2.0)"
    """

    def __init__(
        self, file: str, row_word: str, line: int, symbol: str | None, rule: str, detail: str = ""
    ) -> None:
        self.file, self.line, self.symbol, self.rule = file, line, symbol, rule
        where = f"{file}, {row_word} {line}, symbol {symbol!r}"
        super().__init__(f"{where}: {rule}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class Source:
    """Where rows came from, for error messages.

    ``row_word`` is ``"line"`` for CSV (the ``_line`` column then holds line numbers
    with the header as line 1) and ``"row"`` for Parquet or in-memory tables.
    ``typed`` marks a file whose columns carry their own types (Parquet): there a
    numeric field must be a numeric column, not text.
    """

    name: str
    row_word: str = "row"
    typed: bool = False

    def error(self, line: int, symbol: str | None, rule: str, detail: str = "") -> ValidationError:
        return ValidationError(self.name, self.row_word, line, symbol, rule, detail)

    def header_error(self, rule: str, detail: str) -> IngestError:
        """A problem with the columns themselves: the CSV header (line 1) or the Parquet schema."""
        where = "line 1 (header)" if self.row_word == "line" else "schema"
        return IngestError(f"{self.name}, {where}: {rule} ({detail})")


@dataclass(frozen=True)
class BarGrid:
    """The bar-frequency rule the data passed: every time of day is ``phase`` mod ``step``."""

    step_ns: int
    phase_ns: int
    intraday: bool

    def describe(self) -> str:
        """Human form, e.g. ``'daily bars at 00:00:00'`` or ``'5min bars, phase 00:30:00'``."""
        phase = str(np.timedelta64(self.phase_ns, "ns").astype("timedelta64[s]").item())
        if not self.intraday:
            return f"daily bars at {phase}"
        return f"{_duration(self.step_ns)} bars, phase {phase}"


def _duration(ns: int) -> str:
    for unit, size in (("h", 3600 * 10**9), ("min", 60 * 10**9), ("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


def parse_times(raw: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Parse a time column into ``Datetime("ns")`` (null where unparseable) and a date-only flag.

    Strings may be ``YYYY-MM-DD`` or ``YYYY-MM-DD[ T]HH:MM[:SS[.fff]]``; ``Date`` and
    ``Datetime`` columns (Parquet) pass through, timezone-aware ones converted to naive
    UTC. Times outside the nanosecond range (1677-09-21 .. 2262-04-11) are null too:
    polars would wrap them around silently (1500-01-01 would read as 2084-07-20).

    Example:
        >>> t, d = parse_times(pl.Series(["2020-01-02", "2020-01-02T09:30", "02/01/2020", "1500-01-01"]))
        >>> t.to_list()[1], d.to_list(), t.null_count()
        (datetime.datetime(2020, 1, 2, 9, 30), [True, False, False, True], 2)
    """
    if raw.dtype == pl.Date:
        return raw.cast(pl.Datetime("ns"), strict=False), pl.Series(np.ones(len(raw), bool))
    if isinstance(raw.dtype, pl.Datetime):
        if raw.dtype.time_zone is not None:
            raw = raw.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return raw.cast(pl.Datetime("ns"), strict=False), pl.Series(np.zeros(len(raw), bool))
    text = raw.cast(pl.String).str.strip_chars()
    parsed = text.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("ns"), strict=False)
    date_only = text.str.to_date("%Y-%m-%d", strict=False).is_not_null()
    if (parsed.is_null() & ~date_only & text.is_not_null()).any():
        spaced = text.str.replace("T", " ", literal=True)

        def parse(unit: str) -> pl.Series:
            candidates = [spaced.str.strptime(pl.Datetime(unit), f, strict=False) for f in _DATETIME_FORMATS]
            return pl.select(pl.coalesce(*candidates)).to_series()

        # a nanosecond parse overflows silently; the microsecond one does not, so a
        # nanosecond value that disagrees with it wrapped around
        ns, us = parse("ns"), parse("us")
        fits = (ns.cast(pl.Int64) // 1000) == us.cast(pl.Int64)
        wide = pl.select(pl.when(fits).then(ns)).to_series()
        parsed = pl.select(pl.coalesce(parsed, pl.when(~date_only).then(wide))).to_series()
    return parsed.alias(raw.name), date_only.alias("date_only")


TIME_RANGE = "1677-09-21 .. 2262-04-11"


def bad_time(raw: object, what: str = "time") -> tuple[str, str]:
    """``(rule, detail)`` for a time ``parse_times`` left null: out of range or unparseable.

    Example:
        >>> bad_time("1500-01-01")[0], bad_time("soon")[0]
        ('time out of range', 'unparseable time')
    """
    text = None if raw is None else str(raw).strip().replace("T", " ")
    forms = ("%Y-%m-%d", *_DATETIME_FORMATS, "%Y-%m-%d %H:%M:%S%.f%z")
    wide = pl.Series([text], dtype=pl.String)
    if text and any(wide.str.strptime(pl.Datetime("us"), f, strict=False).is_not_null().any() for f in forms):
        return f"{what} out of range", f"{what} {raw!r} is outside {TIME_RANGE}, the range of nanosecond times"
    return f"unparseable {what}", f"{what} {raw!r}; expected YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS[.fff]]"


def time_text(ns: int) -> str:
    """A nanosecond time in full, e.g. ``'2020-01-02 00:00:00.000000001'`` (never cut to microseconds)."""
    return str(pd.Timestamp(int(ns), unit="ns"))


def first_true(mask: pl.Series) -> int | None:
    """Index of the first True in a boolean Series (nulls count as False), or None."""
    hit = mask.fill_null(False).arg_true()
    return int(hit[0]) if len(hit) else None


# --------------------------------------------------------------------------- bars


def infer_grid(time_ns: np.ndarray, code: np.ndarray) -> BarGrid:
    """The bar grid of a data set: modal within-symbol gap and modal time of day.

    ``time_ns`` may contain ``_scan.NO_TIME`` (unparseable) and ``code`` -1
    (missing symbol); those rows are ignored here and refused by the scan.

    Example:
        >>> day = NS_PER_DAY
        >>> infer_grid(np.array([0, day, 2 * day]), np.zeros(3, np.int64)).describe()
        'daily bars at 0:00:00'
    """
    frame = pl.DataFrame({"t": time_ns, "s": code}).filter(
        (pl.col("t") != _scan.NO_TIME) & (pl.col("s") >= 0)
    )
    gaps = frame.select(pl.col("t").diff().over("s").alias("g")).filter(pl.col("g") > 0)["g"]
    step = int(gaps.mode().min()) if len(gaps) else NS_PER_DAY
    intraday = step < NS_PER_DAY
    grid_step = step if intraday else NS_PER_DAY
    tod = frame["t"] % NS_PER_DAY % grid_step
    phase = int(tod.mode().min()) if len(tod) else 0
    return BarGrid(grid_step, phase, intraday)


def check_bars(bars: pl.DataFrame, sources: Sequence[Source], symbols: Sequence[str],
               grid: BarGrid | None = None) -> BarGrid:
    """Refuse the first bad row of ``bars`` (all files, in order); return the bar grid.

    ``bars`` columns: ``_src`` (index into ``sources``), ``_line``, ``time``
    (``Datetime("ns")``, null = unparseable), ``date_only``, ``symbol``, ``code``
    (index into ``symbols``, -1 = missing), ``open high low close volume`` (Float64).
    ``grid`` is the grid the bars must be on (an append: the store's); by default the
    grid is inferred from the bars themselves.
    """
    time_ns = bars["time"].cast(pl.Int64).fill_null(_scan.NO_TIME).to_numpy()
    code = bars["code"].cast(pl.Int64).to_numpy()
    grid = infer_grid(time_ns, code) if grid is None else grid
    last_time = np.full(len(symbols), _scan.NO_TIME, dtype=np.int64)
    fields = [bars[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in PRICE_FIELDS]
    row, rule = _scan.scan_bars(
        code,
        time_ns,
        bars["date_only"].cast(pl.UInt8).to_numpy(),
        *fields,
        last_time,
        grid.step_ns,
        grid.phase_ns,
        grid.intraday,
    )
    if row >= 0:
        raise _bar_error(bars, row, rule, sources, grid, last_time)
    return grid


def _bar_error(
    bars: pl.DataFrame,
    row: int,
    rule: int,
    sources: Sequence[Source],
    grid: BarGrid,
    last_time: np.ndarray,
) -> ValidationError:
    rec = bars.row(row, named=True)
    src = sources[rec["_src"]]
    rule_name = _scan.RULE_NAMES[rule]
    values = ", ".join(f"{k}={rec[k]!r}" for k in PRICE_FIELDS)
    time_ns = bars["time"].cast(pl.Int64)
    # polars rows hold microsecond datetimes: times are printed from the nanosecond ints
    when = time_text(time_ns[row]) if time_ns[row] is not None else None
    if rule == _scan.UNPARSEABLE_TIME:
        rule_name, detail = bad_time(rec.get("time_raw"))
    elif rule == _scan.MISSING_SYMBOL:
        detail = "empty symbol"
    elif rule == _scan.DUPLICATE:
        first = bars.slice(0, row).filter(
            (pl.col("code") == rec["code"]) & (pl.col("time") == rec["time"])
        ).row(0, named=True)
        where = sources[first["_src"]]
        detail = f"time {when} first at {where.name} {where.row_word} {first['_line']}"
    elif rule == _scan.UNSORTED:
        detail = f"time {when} comes after {time_text(last_time[rec['code']])} for this symbol"
    elif rule == _scan.MIXED_FREQUENCY:
        detail = f"time {when} is off the data set's grid ({grid.describe()})"
    else:
        detail = values
    return src.error(rec["_line"], rec["symbol"], rule_name, detail)


# --------------------------------------------------------------------------- reference tables


def pick_column(df: pl.DataFrame, names: Sequence[str], src: Source, required: bool = True) -> str | None:
    """The column of ``df`` whose lower-cased name is in ``names``; two such columns are
    refused (``Close`` beside ``close``, or ``date`` beside ``time``): which one holds the
    data is a guess."""
    found = [c for c in df.columns if c.lower() in names]
    if len(found) > 1:
        raise src.header_error("ambiguous columns", f"{' and '.join(map(repr, found))} both give {names[0]!r}")
    if found:
        return found[0]
    if required:
        raise IngestError(f"{src.name}: no column named any of {list(names)} (columns: {df.columns})")
    return None


def _times(df: pl.DataFrame, col: str, src: Source, what: str, optional: bool = False) -> pl.Series:
    parsed, _ = parse_times(df[col])
    bad = parsed.is_null()
    if optional:
        bad = bad & df[col].is_not_null()
    i = first_true(bad)
    if i is not None:
        rule, detail = bad_time(df[col][i], what)
        raise src.error(df["_line"][i], df["symbol"][i] if "symbol" in df.columns else None, rule, detail)
    return parsed


def check_numeric_column(series: pl.Series, src: Source, what: str) -> None:
    """Refuse a column whose type cannot hold numbers of ``what``: booleans (True is not
    1.0 shares), dates, nested values; and text in a typed file (Parquet)."""
    dtype = series.dtype
    if dtype.is_numeric() or dtype == pl.Null or (dtype == pl.String and not src.typed):
        return
    raise src.header_error("non-numeric column", f"{what} column {series.name!r} has type {dtype}")


def to_floats(df: pl.DataFrame, col: str, src: Source, what: str) -> pl.Series:
    """``df[col]`` as Float64; refuse a non-numeric column type, then the first value that
    is present but not a number."""
    check_numeric_column(df[col], src, what)
    values = df[col].cast(pl.Float64, strict=False)
    i = first_true(values.is_null() & df[col].is_not_null())
    if i is not None:
        raise src.error(df["_line"][i], df["symbol"][i] if "symbol" in df.columns else None,
                        f"non-numeric {what}", f"{what} {df[col][i]!r}")
    return values


def _known_symbols(
    df: pl.DataFrame, symbols: Collection[str], src: Source, unknown: str
) -> tuple[pl.DataFrame, int]:
    """Refuse (``unknown="error"``) or drop (``"drop"``) rows naming symbols not in the prices."""
    i = first_true(df["symbol"].is_null())
    if i is not None:
        raise src.error(df["_line"][i], None, "missing symbol")
    known = df["symbol"].is_in(pl.Series(list(symbols), dtype=pl.String).implode())
    if unknown == "drop":
        return df.filter(known), int((~known).sum())
    i = first_true(~known)
    if i is not None:
        raise src.error(
            df["_line"][i], df["symbol"][i], "unknown symbol",
            "not in the price data; pass unknown_symbols='drop' (CLI --drop-unknown-symbols) "
            "to keep only priced symbols",
        )
    return df, 0


def _repeated(*keys: str) -> pl.Expr:
    """True on the second and later rows of each key (the first row stays the reference)."""
    return pl.int_range(pl.len()).over(*keys) > 0


def with_lines(df: pl.DataFrame, src: Source) -> pl.DataFrame:
    """Add the ``_line`` column (1-based row, or line with the header as 1 for CSV)."""
    if "_line" in df.columns:
        return df
    return df.with_row_index("_line", offset=2 if src.row_word == "line" else 1).with_columns(
        pl.col("_line").cast(pl.Int64)
    )


def _symbol_column(df: pl.DataFrame, src: Source) -> pl.DataFrame:
    col = pick_column(df, ("symbol", "ticker"), src)
    return df.with_columns(pl.col(col).cast(pl.String).str.strip_chars().alias("symbol"))


# ``declared`` (actions) and ``announced`` / ``end_announced`` (membership) are when a
# change became known, where the input gives it (null: known at its effective date)
ACTIONS_SCHEMA = {"symbol": pl.String, "ex_date": pl.Datetime("ns"),
                  "split_ratio": pl.Float64, "cash_dividend": pl.Float64,
                  "declared": pl.Datetime("ns")}
UNIVERSES_SCHEMA = {"universe_id": pl.String, "symbol": pl.String,
                    "start": pl.Datetime("ns"), "end": pl.Datetime("ns"),
                    "announced": pl.Datetime("ns"), "end_announced": pl.Datetime("ns")}
EVENTS_SCHEMA = {"symbol": pl.String, "event_time": pl.Datetime("ns"),
                 "knowledge_time": pl.Datetime("ns"), "field": pl.String, "value": pl.Float64}
# an empty regimes table has text labels; a given one keeps its labels' type
REGIMES_SCHEMA = {"time": pl.Datetime("ns"), "regime": pl.String}
TABLE_SCHEMAS = {"universes": UNIVERSES_SCHEMA, "actions": ACTIONS_SCHEMA,
                 "events": EVENTS_SCHEMA, "regimes": REGIMES_SCHEMA}


def empty_table(name: str) -> pl.DataFrame:
    """An empty reference table ``name`` (universes, actions, events, regimes) with its schema."""
    return pl.DataFrame(schema=TABLE_SCHEMAS[name])


SPLIT_SNAP_TOLERANCE = 1e-5
_SNAP_ROUNDING = 5e-7  # half the last digit of a ratio printed with six decimals
_SNAP_MAX_N = 1000  # n-for-1 and 1-for-n
_SNAP_MAX_TERM = 100  # m-for-n


def simple_fraction(ratio: float, tolerance: float = SPLIT_SNAP_TOLERANCE) -> Fraction | None:
    """The simple fraction within ``tolerance`` (relative; or 5e-7, six-decimal rounding)
    of a split ratio, or None.

    Candidates are n-for-1 and 1-for-n (n up to 1000, n = 1 excluded) and m-for-n
    (both up to 100); the one with the smallest terms wins.

    Example:
        >>> simple_fraction(7.000007), simple_fraction(1.49999925), simple_fraction(1.068833)
        (Fraction(7, 1), Fraction(3, 2), None)
    """
    candidates = [Fraction(round(ratio)), Fraction(1, max(1, round(1 / ratio)))]
    candidates += [Fraction(round(ratio * q), q) for q in range(1, _SNAP_MAX_TERM + 1)]
    simple = [
        f for f in candidates
        if f != 1 and 0 < f.numerator and abs(float(f) - ratio) <= max(tolerance * ratio, _SNAP_ROUNDING)
        and (max(f.numerator, f.denominator) <= _SNAP_MAX_TERM or min(f.numerator, f.denominator) == 1)
        and max(f.numerator, f.denominator) <= _SNAP_MAX_N
    ]
    return min(simple, key=lambda f: (max(f.numerator, f.denominator), f.denominator), default=None)


def _snap_splits(out: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Replace noisy split ratios by their simple fractions; return the table and the
    snapped rows (``_line, symbol, ex_date, raw, snapped, fraction``)."""
    exact = {}
    for ratio in out["split_ratio"].filter(out["split_ratio"] != 1.0).unique().to_list():
        frac = simple_fraction(ratio)
        if frac is not None and float(frac) != ratio:
            exact[ratio] = frac
    snapped = out.filter(pl.col("split_ratio").is_in(list(exact))).select(
        "_line", "symbol", "ex_date", raw=pl.col("split_ratio"),
        snapped=pl.col("split_ratio").replace_strict({r: float(f) for r, f in exact.items()},
                                                     return_dtype=pl.Float64, default=None),
        fraction=pl.col("split_ratio").replace_strict({r: str(f) for r, f in exact.items()},
                                                      return_dtype=pl.String, default=None),
    )
    if exact:
        out = out.with_columns(split_ratio=pl.col("split_ratio").replace({r: float(f) for r, f in exact.items()}))
    return out, snapped


def normalize_actions(
    df: pl.DataFrame, src: Source, symbols: Collection[str], unknown: str = "error"
) -> tuple[pl.DataFrame, int, pl.DataFrame]:
    """Corporate actions ``symbol, ex_date, split_ratio, cash_dividend``; returns
    (table, rows dropped, snapped split ratios).

    Accepts ``split_coefficient`` / ``dividend_amount`` (vendor names) and either
    column alone; a blank split is 1 and a blank dividend 0. Rows with no split and no
    dividend are dropped. Rules: unknown symbol, unparseable ex_date, split ratio not
    finite and > 0, dividend not finite and >= 0, duplicate ``(symbol, ex_date)``.
    Noisy split ratios are snapped to simple fractions (module docstring); the third
    value lists them: ``_line, symbol, ex_date, raw, snapped, fraction``.

    Example:
        >>> raw = pl.DataFrame({"ticker": ["A", "A"], "date": ["2020-01-02", "2020-02-03"],
        ...                     "split_coefficient": ["2.000001", "1"], "dividend_amount": ["0", "0.5"]})
        >>> table, _, snapped = normalize_actions(raw, Source("a.csv", "line"), {"A"})
        >>> table["split_ratio"].to_list(), snapped.select("_line", "raw", "fraction").rows()
        ([2.0, 1.0], [(2, 2.000001, '2')])
    """
    df = _symbol_column(with_lines(df, src), src)
    date = pick_column(df, ("ex_date", "date", "time"), src)
    split = pick_column(df, ("split_ratio", "split_coefficient", "split"), src, required=False)
    div = pick_column(df, ("cash_dividend", "dividend_amount", "dividend"), src, required=False)
    if split is None and div is None:
        raise IngestError(f"{src.name}: needs a split_ratio or cash_dividend column (columns: {df.columns})")
    declared = pick_column(df, ("declared", "declaration_date", "declared_date"), src, required=False)
    ratio = to_floats(df, split, src, "split ratio") if split else pl.Series(np.ones(len(df)))
    cash = to_floats(df, div, src, "dividend") if div else pl.Series(np.zeros(len(df)))
    out = df.select("_line", "symbol").with_columns(
        ex_date=_times(df, date, src, "ex_date"),
        split_ratio=ratio.fill_null(1.0),
        cash_dividend=cash.fill_null(0.0),
        declared=(_times(df, declared, src, "declared", optional=True) if declared
                  else pl.lit(None, pl.Datetime("ns"))),
    )
    out, dropped = _known_symbols(out, symbols, src, unknown)
    rules = (
        (~(pl.col("split_ratio").is_finite() & (pl.col("split_ratio") > 0)), "invalid split ratio"),
        (~(pl.col("cash_dividend").is_finite() & (pl.col("cash_dividend") >= 0)), "invalid dividend"),
        (_repeated("symbol", "ex_date"), "duplicate (symbol, ex_date)"),
        ((pl.col("declared") > pl.col("ex_date")).fill_null(False), "declared after its ex_date"),
    )
    for expr, rule in rules:
        i = first_true(out.select(expr).to_series())
        if i is not None:
            r = out.row(i, named=True)
            raise src.error(r["_line"], r["symbol"], rule,
                            f"ex_date {r['ex_date']}, split_ratio={r['split_ratio']}, "
                            f"cash_dividend={r['cash_dividend']}")
    out, snapped = _snap_splits(out)
    out = out.filter((pl.col("split_ratio") != 1.0) | (pl.col("cash_dividend") != 0.0))
    table = out.select(list(ACTIONS_SCHEMA)).cast(ACTIONS_SCHEMA).sort("ex_date", "symbol")
    return table, dropped, snapped


def normalize_universes(
    df: pl.DataFrame,
    src: Source,
    symbols: Collection[str],
    universe_id: str | None = None,
    unknown: str = "error",
) -> tuple[pl.DataFrame, int]:
    """Membership as intervals ``universe_id, symbol, start, end``; returns (table, dropped).

    Input is either intervals (``ticker|symbol, start_date|start, end_date|end``: a
    member while ``start <= d < end``, blank end = still a member) or snapshots
    (``date, symbol``: the members from that date until the next snapshot date of the
    same universe). ``universe_id`` comes from a column of that name, else the argument.
    Rules: missing or unknown symbol, unparseable dates, end not after start.

    Example:
        >>> snaps = pl.DataFrame({"date": ["2020-01-01", "2020-01-01", "2020-02-01"],
        ...                       "symbol": ["A", "B", "A"]})
        >>> t, _ = normalize_universes(snaps, Source("u.csv", "line"), {"A", "B"}, "u")
        >>> [(r["symbol"], str(r["start"].date()), r["end"]) for r in t.iter_rows(named=True)]
        [('A', '2020-01-01', None), ('B', '2020-01-01', datetime.datetime(2020, 2, 1, 0, 0))]
    """
    df = _symbol_column(with_lines(df, src), src)
    uid_col = pick_column(df, ("universe_id", "universe"), src, required=False)
    if uid_col is None and universe_id is None:
        raise IngestError(f"{src.name}: no universe_id column and no universe id given")
    uid = pl.col(uid_col).cast(pl.String) if uid_col else pl.lit(universe_id, pl.String)
    start_col = pick_column(df, ("start_date", "start"), src, required=False)
    if start_col is None:
        date = _times(df, pick_column(df, ("date", "time"), src), src, "date")
        snaps = df.select("_line", "symbol", uid.alias("universe_id")).with_columns(date=date)
        snaps, dropped = _known_symbols(snaps, symbols, src, unknown)
        intervals = _snapshots_to_intervals(snaps)
    else:
        end_col = pick_column(df, ("end_date", "end"), src)
        if df[end_col].dtype == pl.String:
            df = df.with_columns(pl.col(end_col).str.strip_chars().replace("", None))
        announced = {}
        for key, names in (("announced", ("announced", "announcement_date", "start_announced")),
                           ("end_announced", ("end_announced", "end_announcement_date"))):
            col = pick_column(df, names, src, required=False)
            announced[key] = (_times(df, col, src, key, optional=True) if col
                              else pl.lit(None, pl.Datetime("ns")))
        out = df.select("_line", "symbol", uid.alias("universe_id")).with_columns(
            start=_times(df, start_col, src, "start_date"),
            end=_times(df, end_col, src, "end_date", optional=True),
            **announced,
        )
        out, dropped = _known_symbols(out, symbols, src, unknown)
        for expr, rule in ((pl.col("end") <= pl.col("start"), "end_date not after start_date"),
                           (pl.col("announced") > pl.col("start"), "announced after start_date"),
                           (pl.col("end_announced") > pl.col("end"), "end_announced after end_date")):
            i = first_true(out.select(expr.fill_null(False)).to_series())
            if i is not None:
                r = out.row(i, named=True)
                raise src.error(r["_line"], r["symbol"], rule, f"{r['start']} .. {r['end']}")
        intervals = out
    for key in ("announced", "end_announced"):
        if key not in intervals.columns:
            intervals = intervals.with_columns(pl.lit(None, pl.Datetime("ns")).alias(key))
    table = intervals.select(list(UNIVERSES_SCHEMA)).cast(UNIVERSES_SCHEMA)
    return table.sort("universe_id", "symbol", "start"), dropped


def _snapshots_to_intervals(snaps: pl.DataFrame) -> pl.DataFrame:
    # number each universe's snapshot dates; a run of consecutive snapshot numbers is one interval
    dates = snaps.select("universe_id", "date").unique().sort("universe_id", "date").with_columns(
        k=pl.int_range(pl.len()).over("universe_id"),
        next_date=pl.col("date").shift(-1).over("universe_id"),
    )
    rows = snaps.select("universe_id", "symbol", "date").unique().join(
        dates, on=["universe_id", "date"]
    ).sort("universe_id", "symbol", "k")
    rows = rows.with_columns(
        run=(pl.col("k").diff().over("universe_id", "symbol").fill_null(0) != 1).cum_sum()
    )
    return rows.group_by("universe_id", "symbol", "run").agg(
        start=pl.col("date").first(), end=pl.col("next_date").last()
    )


def normalize_events(
    df: pl.DataFrame, src: Source, symbols: Collection[str], unknown: str = "error"
) -> tuple[pl.DataFrame, int]:
    """Events ``symbol, event_time, knowledge_time, field, value``; returns (table, dropped).

    ``knowledge_time`` is when the value became known (disclosure, publication);
    ``as_of(t)`` shows an event only once ``knowledge_time <= t``. A date-only
    knowledge time means midnight, so it is visible at that date's daily bar; a time
    after midnight on a daily data set shows from the next bar. Values are numbers.
    Rules: missing or unknown symbol, unparseable times, missing field, non-numeric value.

    Example:
        >>> raw = pl.DataFrame({"symbol": ["A"], "event_time": ["2020-01-02"],
        ...                     "knowledge_time": ["2020-01-09 08:00"], "field": ["eps"],
        ...                     "value": ["1.5"]})
        >>> normalize_events(raw, Source("e.csv", "line"), {"A"})[0]["value"].to_list()
        [1.5]
    """
    df = _symbol_column(with_lines(df, src), src)
    cols = {name: pick_column(df, (name,), src) for name in ("event_time", "knowledge_time", "field", "value")}
    out = df.select("_line", "symbol").with_columns(
        event_time=_times(df, cols["event_time"], src, "event_time"),
        knowledge_time=_times(df, cols["knowledge_time"], src, "knowledge_time"),
        field=df[cols["field"]].cast(pl.String),
        value=to_floats(df, cols["value"], src, "value"),
    )
    out, dropped = _known_symbols(out, symbols, src, unknown)
    for col, rule in (("field", "missing field"), ("value", "missing value")):
        i = first_true(out[col].is_null())
        if i is not None:
            raise src.error(out["_line"][i], out["symbol"][i], rule)
    table = out.select(list(EVENTS_SCHEMA)).cast(EVENTS_SCHEMA)
    return table.sort("knowledge_time", "symbol", "event_time", "field", maintain_order=True), dropped


def normalize_regimes(df: pl.DataFrame, src: Source) -> pl.DataFrame:
    """Market regimes ``time, regime`` sorted by time; the label keeps its type.

    A regime row is taken as known at its own time. A label published later (for
    example a recession dated after the fact) belongs in the events table, with its
    knowledge time. Rules: unparseable time, missing regime, duplicate time.

    Example:
        >>> raw = pl.DataFrame({"time": ["2020-02-01", "2020-01-01"], "regime": ["bear", "bull"]})
        >>> normalize_regimes(raw, Source("r.csv", "line"))["regime"].to_list()
        ['bull', 'bear']
    """
    df = with_lines(df, src)
    time_col = pick_column(df, ("time", "date"), src)
    regime_col = pick_column(df, ("regime",), src)
    out = df.select("_line", pl.col(regime_col).alias("regime")).with_columns(
        time=_times(df, time_col, src, "time")
    )
    for expr, rule in ((pl.col("regime").is_null(), "missing regime"),
                       (_repeated("time"), "duplicate time")):
        i = first_true(out.select(expr).to_series())
        if i is not None:
            raise src.error(out["_line"][i], None, rule, f"time {out['time'][i]}")
    return out.select("time", "regime").sort("time")


SUSPICIOUS_MOVE = 0.4


def suspicious_moves(close: np.ndarray, valid: np.ndarray, split_ratio: np.ndarray,
                     dividend: np.ndarray, threshold: float = SUSPICIOUS_MOVE,
                     before: np.ndarray | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bars whose close moved more than no corporate action on record explains: ``(t, s,
    previous close, move)`` for each, ``move`` as a fraction (-0.7 for -70 %).

    The move runs from the symbol's previous traded close (across gaps) to this bar's
    close, with this bar's recorded split and cash dividend put back:
    ``(close + dividend) * split_ratio / previous_close - 1``. A bar is listed when
    the move falls below ``-threshold`` or rises above ``1 / (1 - threshold) - 1``
    (the same distance in log terms: -40 % and +66.7 % by default), so an unrecorded
    2-for-1 split (about -50 %) or a spin-off (-70 %) shows and a correctly recorded
    one does not; so does a recorded split the prices do not show (the raw closes
    barely move, the move with the split put back does). These are warnings: such
    bars may be real (a crash, a buyout).

    ``before`` (one value per symbol, NaN for none): each symbol's last traded close
    before the first row, so that the first rows of an append are checked against
    the store's last bars (:func:`last_closes`).

    Example:
        >>> close = np.array([[10.0], [3.0], [3.1]])
        >>> ones, zeros = np.ones((3, 1)), np.zeros((3, 1))
        >>> t, s, prev, move = suspicious_moves(close, np.ones((3, 1), bool), ones, zeros)
        >>> t.tolist(), prev.tolist(), np.round(move, 2).tolist()
        ([1], [10.0], [-0.7])
        >>> suspicious_moves(close[1:], np.ones((2, 1), bool), ones[1:], zeros[1:],
        ...                  before=np.array([10.0]))[0].tolist()
        [0]
    """
    if not 0 < threshold < 1:
        raise ValueError(f"the suspicious-move threshold must be in (0, 1), got {threshold!r}")
    n_time = close.shape[0]
    # the index of each symbol's latest traded bar up to t, -1 before its first
    seen = np.maximum.accumulate(np.where(valid, np.arange(n_time)[:, None], -1), axis=0)
    prev_row = np.vstack([np.full((1, close.shape[1]), -1), seen[:-1]])
    start = np.full(close.shape[1], np.nan) if before is None else np.asarray(before, np.float64)
    prev_close = np.where(prev_row >= 0, np.take_along_axis(close, np.maximum(prev_row, 0), axis=0),
                          start[None, :])
    has_prev = valid & np.isfinite(prev_close)
    split = np.where(np.isfinite(split_ratio), split_ratio, 1.0)
    paid = np.where(np.isfinite(dividend), dividend, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        move = (close + paid) * split / prev_close - 1.0
    flag = has_prev & beyond(move, threshold)
    t, s = np.nonzero(flag)
    return t, s, prev_close[t, s], move[t, s]


def beyond(move: np.ndarray, threshold: float) -> np.ndarray:
    """Moves outside ``(-threshold, 1 / (1 - threshold) - 1)``: the listing's band."""
    return (move < -threshold) | (move > 1.0 / (1.0 - threshold) - 1.0)


def last_closes(close: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each symbol's last traded close (NaN for a symbol that never traded).

    Example:
        >>> last_closes(np.array([[1.0, np.nan], [2.0, np.nan]]),
        ...             np.array([[True, False], [True, False]])).tolist()
        [2.0, nan]
    """
    last = np.where(valid.any(axis=0), close.shape[0] - 1 - np.argmax(valid[::-1], axis=0), -1)
    picked = close[np.maximum(last, 0), np.arange(close.shape[1])]
    return np.where(last >= 0, picked, np.nan)
