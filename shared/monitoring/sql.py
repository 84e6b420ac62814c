"""The counts of summary.py as one SQL query, for windows too big for one Lambda.

`counts_sql` writes a query that Athena (Trino) and DuckDB both run over the capture files
as they are; `counts_from_rows` turns its result back into exactly the `VersionCounts` that
`summary.count_rows` makes of the same rows in-process (the tests compare the two).

The table has the columns of `CaptureRow`, with `features` a MAP(VARCHAR, VARCHAR) and
`probabilities` a MAP(VARCHAR, DOUBLE), not structs: feature and class names are the
user's, and a struct cannot hold them all. Both engines match struct fields ignoring case
(a model may have features "Age" and "age"), Hive lowercases struct field names and
refuses some characters in them. In a map a name is only a string literal in the query.
A JSON number read as VARCHAR keeps a text that CAST(... AS DOUBLE) reads back exactly,
and the integer class 1 stays "1" (DuckDB keeps the JSON text; Athena's OpenX SerDe
writes it with Java's BigDecimal).

The query reads the table once. Each served row is repeated once per "measure" (a
feature, the predicted class or value, a class's probability) by a CROSS JOIN with a
VALUES list, and gives one bucket per measure: a bin index, a category or a class, NULL
when missing. A GROUP BY (measure, bucket) then counts everything at once. A UNION ALL of
one SELECT per feature would be shorter to write, but Athena would read (and bill) the
files once per feature.

Result rows are `(measure, bucket, pooled, n, below, above, low, high, newest)`, in any order:

- measure: an index into `measures(metadata)`: the features in metadata order, then the
  prediction, then each class's probability (classification);
- bucket: the bin index as text (numeric features, probabilities and regression values),
  or the category or class; NULL for the missing rows, or for `pooled` rows;
- pooled: 1 for the rows of the categories past MAX_TRACKED_CATEGORIES (`overflow`);
- n: rows; below and above: rows under the training minimum or over its maximum;
- low and high: the smallest and largest value of the bucket (numeric measures);
- newest: the largest capture schema_version seen (a newer one is refused, as in-process).

Cells may be Python values (DuckDB) or text (Athena's GetQueryResults), NULL as None.

Limits, both documented rather than worked around:
- A row whose `features` map lacks one of the version's features: DuckDB reads NULL
  (missing, as in-process), Trino's map subscript fails the query. Capture always writes
  every feature (null when missing), so only a hand-made file can do this; Trino's
  `element_at` would return NULL, but DuckDB's returns a list, so the query cannot use it.
- Each numeric feature costs about 6 KB of query text (one CASE per baseline edge):
  Athena's 256 KB limit on a query allows about 40 numeric features.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal

from shared.data.profile import PROBABILITY_EDGES
from shared.errors import MlopsError
from shared.monitoring.capture import CAPTURE_SCHEMA_VERSION
from shared.monitoring.schema import check_schema
from shared.monitoring.summary import (
    MAX_TRACKED_CATEGORIES,
    Baseline,
    CategoricalCounts,
    NumericCounts,
    PredictionCounts,
    VersionCounts,
)
from shared.registry.metadata import ModelMetadata

MeasureKind = Literal["numeric", "categorical", "class", "value", "probability"]

# Column names of the result, in order (a reader of Athena's CSV output can check them).
RESULT_COLUMNS = (
    "measure",
    "bucket",
    "pooled",
    "n",
    "below",
    "above",
    "low",
    "high",
    "newest",
)

# The columns of a capture file (CaptureRow), typed for DuckDB's read_json. Explicit types
# keep a file of all-null probabilities, or of numbers-only categories, from changing the
# view's types; the maps keep feature names case-sensitive (see the module docstring).
_DUCKDB_COLUMNS = {
    "schema_version": "INTEGER",
    "capture_id": "VARCHAR",
    "row": "INTEGER",
    "request_id": "VARCHAR",
    "model": "VARCHAR",
    "version": "INTEGER",
    "served_by": "VARCHAR",
    "role": "VARCHAR",
    "at": "VARCHAR",
    "features": "MAP(VARCHAR, VARCHAR)",
    "prediction": "VARCHAR",
    "probabilities": "MAP(VARCHAR, DOUBLE)",
}

# The same columns in Hive DDL for Athena.
_ATHENA_COLUMNS = {
    "schema_version": "int",
    "capture_id": "string",
    "row": "int",
    "request_id": "string",
    "model": "string",
    "version": "int",
    "served_by": "string",
    "role": "string",
    "at": "string",
    "features": "map<string,string>",
    "prediction": "string",
    "probabilities": "map<string,double>",
}

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}")
# Athena (Glue) table names: lowercase letters, digits and underscores.
_ATHENA_TABLE_NAME = re.compile(r"[a-z0-9_]{1,255}(\.[a-z0-9_]{1,255})?")


@dataclass(frozen=True)
class Measure:
    """One thing the query counts by bucket: a feature, the prediction, or a probability."""

    kind: MeasureKind
    name: str  # the feature, or the class of a probability; "" for the prediction
    edges: tuple[float, ...] = ()  # numeric kinds: the interior edges of the bins
    low: float | None = None  # numeric features: the training minimum and maximum
    high: float | None = None


def measures(metadata: ModelMetadata) -> list[Measure]:
    """What `counts_sql` counts for a version, in the order of the result's `measure`."""
    baseline = Baseline(metadata)
    found: list[Measure] = []
    for feature in metadata.features:
        if feature.kind == "numeric":
            profile = baseline.numeric(feature.name)
            found.append(
                Measure("numeric", feature.name, tuple(profile.edges), profile.min, profile.max)
            )
        else:
            found.append(Measure("categorical", feature.name))
    if metadata.task == "classification":
        found.append(Measure("class", ""))
        found.extend(
            Measure("probability", str(label), tuple(PROBABILITY_EDGES))
            for label in metadata.classes or []
        )
    else:
        found.append(Measure("value", "", tuple(metadata.baseline.predictions.edges)))
    return found


def quote_identifier(name: str) -> str:
    """`name` as a double-quoted SQL identifier (embedded quotes doubled)."""
    _check_text(name)
    return '"' + name.replace('"', '""') + '"'


def quote_string(text: str) -> str:
    """`text` as a standard SQL string literal (embedded quotes doubled, no escapes)."""
    _check_text(text)
    return "'" + text.replace("'", "''") + "'"


def float_literal(value: float) -> str:
    """A DOUBLE literal that reads back as exactly `value`.

    repr() is the shortest text that round-trips. Without an exponent, Trino and DuckDB
    read `0.1` as a DECIMAL and convert it to DOUBLE to compare; whether that conversion
    gives the nearest double is up to each engine (older Presto divided two doubles).
    With an exponent (`0.1e0`) both parse a DOUBLE, correctly rounded.
    """
    number = float(value)
    if not math.isfinite(number):
        raise MlopsError(f"{value!r} cannot be a bin edge or bound in SQL")
    text = repr(number)
    return text if "e" in text else f"{text}e0"


def _check_text(text: str) -> None:
    # Engines and drivers cut strings at NUL; no name with one is worth the risk.
    if "\x00" in text:
        raise MlopsError(f"{text!r}: a NUL character cannot be put in a query")


def _table(name: str) -> str:
    if not _TABLE_NAME.fullmatch(name):
        raise MlopsError(f"table {name!r}: use letters, digits and '_', optionally 'db.table'")
    return ".".join(quote_identifier(part) for part in name.split("."))


def _bin(column: str, edges: Sequence[float]) -> str:
    """The index of the bin of `column`: how many edges are <= it (searchsorted, right)."""
    if not edges:
        return "0"
    return " + ".join(
        f"CASE WHEN {column} >= {float_literal(edge)} THEN 1 ELSE 0 END" for edge in edges
    )


def _flag(column: str, operator: str, bound: float | None) -> str:
    if bound is None:
        return "0"
    return f"CASE WHEN {column} {operator} {float_literal(bound)} THEN 1 ELSE 0 END"


def _hour(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise MlopsError(f"{what}: give an aware datetime (UTC), got {value.isoformat()}")
    value = value.astimezone(UTC)
    if value.minute or value.second or value.microsecond:
        # Partitions are whole hours: a bound inside one could not be honoured.
        raise MlopsError(f"{what}: must be a whole hour, got {value.isoformat()}")
    return value


def window_condition(start: datetime | None, end: datetime | None) -> str | None:
    """A condition on the `dt` and `hour` partition columns: start <= hour < end.

    Written on the partition columns alone, so Athena reads only the window's partitions.
    Both are zero-padded text ('2024-05-01', '07'), so text order is time order.
    """
    parts: list[str] = []
    if start is not None:
        first = _hour(start, "start")
        day, hour = quote_string(f"{first:%Y-%m-%d}"), quote_string(f"{first:%H}")
        parts.append(f'("dt" > {day} OR ("dt" = {day} AND "hour" >= {hour}))')
    if end is not None:
        last = _hour(end, "end")
        day, hour = quote_string(f"{last:%Y-%m-%d}"), quote_string(f"{last:%H}")
        parts.append(f'("dt" < {day} OR ("dt" = {day} AND "hour" < {hour}))')
    return " AND ".join(parts) if parts else None


def counts_sql(
    metadata: ModelMetadata,
    table: str = "captures",
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> str:
    """One query counting the served rows of `metadata`'s version in `table`.

    `start` and `end` (whole UTC hours) keep the partitions of [start, end); the table
    then needs the `dt` and `hour` partition columns (see `athena_table_ddl`,
    `duckdb_table_sql`). Feed the result rows to `counts_from_rows`.
    """
    found = measures(metadata)
    served: list[str] = []  # the value each measure reads from a row, as column v<i>
    buckets: list[str] = []
    values: list[str] = []  # numeric measures: the value whose low and high are kept
    below: list[str] = []
    above: list[str] = []
    pooled: list[str] = []  # measures whose rarer buckets are pooled (categorical)
    for i, measure in enumerate(found):
        column = f"v{i}"
        if measure.kind == "numeric":
            served.append(f'CAST("features"[{quote_string(measure.name)}] AS DOUBLE)')
        elif measure.kind == "categorical":
            served.append(f'"features"[{quote_string(measure.name)}]')
        elif measure.kind == "class":
            # In-process the class is str() of the JSON value, so a null is "None".
            served.append("COALESCE(CAST(\"prediction\" AS VARCHAR), 'None')")
        elif measure.kind == "value":
            served.append('CAST("prediction" AS DOUBLE)')
        else:
            served.append(f'"probabilities"[{quote_string(measure.name)}]')
        if measure.kind in ("categorical", "class"):
            buckets.append(f"WHEN {i} THEN {column}")
            if measure.kind == "categorical":
                pooled.append(str(i))
            continue
        buckets.append(
            f"WHEN {i} THEN CASE WHEN {column} IS NULL THEN NULL "
            f"ELSE CAST({_bin(column, measure.edges)} AS VARCHAR) END"
        )
        if measure.kind in ("numeric", "value"):
            values.append(f"WHEN {i} THEN {column}")
        if measure.kind == "numeric" and measure.low is not None:
            below.append(f"WHEN {i} THEN {_flag(column, '<', measure.low)}")
        if measure.kind == "numeric" and measure.high is not None:
            above.append(f"WHEN {i} THEN {_flag(column, '>', measure.high)}")

    def by_measure(branches: list[str], otherwise: str) -> str:
        if not branches:
            return otherwise
        lines = "\n      ".join(branches)
        return f"CASE m.measure\n      {lines}\n      ELSE {otherwise} END"

    conditions = [f'"version" = {int(metadata.version)}', "\"role\" IN ('served', 'batch')"]
    window = window_condition(start, end)
    if window is not None:
        conditions.append(window)
    selected = ",\n    ".join(f"{expr} AS v{i}" for i, expr in enumerate(served))
    indices = ", ".join(f"({i})" for i in range(len(found)))
    if pooled:
        # Only categories can be unbounded. Past the cap the most frequent are kept,
        # ties by name: in-process a file keeps its most frequent and a merge the first
        # seen, so above the cap the two agree on the totals, not always on which are kept.
        is_pooled = (
            f"absent = 0 AND rnk > {MAX_TRACKED_CATEGORIES} AND measure IN ({', '.join(pooled)})"
        )
        pooled_bucket = f"CASE WHEN {is_pooled} THEN NULL ELSE bucket END"
        pooled_flag = f"CASE WHEN {is_pooled} THEN 1 ELSE 0 END"
    else:
        pooled_bucket, pooled_flag = "bucket", "0"
    return f"""WITH served AS (
  SELECT
    {selected},
    "schema_version" AS sv
  FROM {_table(table)}
  WHERE {" AND ".join(conditions)}
),
measured AS (
  SELECT
    m.measure AS measure,
    {by_measure(buckets, "NULL")} AS bucket,
    {by_measure(values, "CAST(NULL AS DOUBLE)")} AS num,
    {by_measure(below, "0")} AS below,
    {by_measure(above, "0")} AS above,
    sv
  FROM served CROSS JOIN (VALUES {indices}) AS m(measure)
),
counted AS (
  SELECT
    measure,
    bucket,
    CASE WHEN bucket IS NULL THEN 1 ELSE 0 END AS absent,
    COUNT(*) AS n,
    SUM(below) AS below,
    SUM(above) AS above,
    MIN(num) AS low,
    MAX(num) AS high,
    MAX(sv) AS newest
  FROM measured
  GROUP BY measure, bucket
),
ranked AS (
  SELECT
    counted.*,
    ROW_NUMBER() OVER (PARTITION BY measure, absent ORDER BY n DESC, bucket) AS rnk
  FROM counted
),
kept AS (
  SELECT
    measure,
    {pooled_bucket} AS bucket,
    {pooled_flag} AS pooled,
    n, below, above, low, high, newest
  FROM ranked
)
SELECT
  measure, bucket, pooled,
  SUM(n) AS n, SUM(below) AS below, SUM(above) AS above,
  MIN(low) AS low, MAX(high) AS high, MAX(newest) AS newest
FROM kept
GROUP BY measure, bucket, pooled
ORDER BY measure, pooled, bucket
"""


def _int(value: object, what: str) -> int:
    # DuckDB gives ints (HUGEINT sums too); Athena gives every cell as text.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise MlopsError(f"result column {what}: expected an integer, got {value!r}")


def _float(value: object, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    raise MlopsError(f"result column {what}: expected a number, got {value!r}")


@dataclass
class _Tally:
    """What the result rows say about one measure."""

    buckets: dict[str, int] = field(default_factory=dict)
    missing: int = 0
    pooled: int = 0
    below: int = 0
    above: int = 0
    low: float | None = None
    high: float | None = None

    @property
    def rows(self) -> int:
        return sum(self.buckets.values()) + self.missing + self.pooled

    def bins(self, measure: Measure) -> list[int]:
        counts = [0] * (len(measure.edges) + 1)
        for bucket, n in self.buckets.items():
            index = _int(bucket, "bucket")
            if not 0 <= index < len(counts):
                raise MlopsError(f"bin {index} of {measure.kind} {measure.name!r} is out of range")
            counts[index] += n
        return counts


def counts_from_rows(metadata: ModelMetadata, rows: Iterable[Sequence[object]]) -> VersionCounts:
    """The `VersionCounts` of the rows of `counts_sql(metadata)`'s result."""
    found = measures(metadata)
    tallies = [_Tally() for _ in found]
    for row in rows:
        if len(row) != len(RESULT_COLUMNS):
            raise MlopsError(f"expected the {len(RESULT_COLUMNS)} columns {RESULT_COLUMNS}")
        index, bucket, pooled, n, below, above, low, high, newest = row
        i = _int(index, "measure")
        if not 0 <= i < len(found):
            raise MlopsError(f"measure {i} is not one of the {len(found)} of this version")
        if newest is not None:
            where = f"captures of {metadata.model} version {metadata.version}"
            check_schema("capture", _int(newest, "newest"), CAPTURE_SCHEMA_VERSION, where)
        tally = tallies[i]
        count = _int(n, "n")
        if _int(pooled, "pooled"):
            tally.pooled += count
        elif bucket is None:
            tally.missing += count
        else:
            key = str(bucket)
            tally.buckets[key] = tally.buckets.get(key, 0) + count
        tally.below += _int(below, "below")
        tally.above += _int(above, "above")
        lo, hi = _float(low, "low"), _float(high, "high")
        tally.low = lo if tally.low is None else tally.low if lo is None else min(tally.low, lo)
        tally.high = hi if tally.high is None else tally.high if hi is None else max(tally.high, hi)

    features: dict[str, NumericCounts | CategoricalCounts] = {}
    predictions = PredictionCounts()
    rows_seen = 0
    for measure, tally in zip(found, tallies, strict=True):
        if measure.kind == "numeric":
            features[measure.name] = NumericCounts(
                counts=tally.bins(measure),
                missing=tally.missing,
                below=tally.below,
                above=tally.above,
                low=tally.low,
                high=tally.high,
            )
        elif measure.kind == "categorical":
            features[measure.name] = CategoricalCounts(
                counts=dict(sorted(tally.buckets.items())),
                missing=tally.missing,
                overflow=tally.pooled,
            )
        elif measure.kind == "class":
            # Every row has a class (a null one is "None"): this measure counts the rows.
            rows_seen = tally.rows
            predictions.class_counts = dict(sorted(tally.buckets.items()))
        elif measure.kind == "value":
            rows_seen = tally.rows
            predictions.value_counts = tally.bins(measure)
            predictions.low, predictions.high = tally.low, tally.high
        elif tally.buckets:
            # In-process a class without any probability has no histogram at all.
            predictions.probability_counts[measure.name] = tally.bins(measure)
    return VersionCounts(
        version=metadata.version, rows=rows_seen, features=features, predictions=predictions
    )


def duckdb_table_sql(glob: str, table: str = "captures", *, partitioned: bool = True) -> str:
    """The DuckDB statement making view `table` over the capture files matching `glob`.

    `partitioned`: the files lie under ``dt=.../hour=.../`` folders, which become the text
    columns `dt` and `hour` (as in Athena) that `counts_sql`'s window condition reads.
    DuckDB refuses them for files outside such folders.
    """
    columns = ", ".join(f"{quote_string(k)}: {quote_string(v)}" for k, v in _DUCKDB_COLUMNS.items())
    options = [
        "format = 'newline_delimited'",
        "compression = 'gzip'",
        f"columns = {{{columns}}}",
    ]
    if partitioned:
        options += ["hive_partitioning = true", "hive_types = {'dt': 'VARCHAR', 'hour': 'VARCHAR'}"]
    listed = ",\n  ".join(options)
    return (
        f"CREATE OR REPLACE VIEW {_table(table)} AS\n"
        f"SELECT * FROM read_json(\n  {quote_string(glob)},\n  {listed}\n)"
    )


def athena_table_name(model: str) -> str:
    """A default Athena table name for a model's captures (Glue names are lowercase)."""
    return "captures_" + model.lower().replace("-", "_")


def athena_table_ddl(
    metadata: ModelMetadata,
    location: str,
    *,
    table: str | None = None,
    first_day: date = date(2024, 1, 1),
) -> str:
    """CREATE EXTERNAL TABLE for the captures of `metadata.model` at `location`.

    `location` is the model's capture prefix, ``s3://<bucket>/captures/<model>/``. The
    partitions are projected (no crawler, no MSCK REPAIR): `dt` from `first_day` to today,
    `hour` 00 to 23, both text as in the keys. The columns are the same for every model
    and version, so one table serves all of a model's versions.
    """
    name = table if table is not None else athena_table_name(metadata.model)
    if not _ATHENA_TABLE_NAME.fullmatch(name):
        raise MlopsError(f"Athena table {name!r}: use lowercase letters, digits and '_'")
    if not location.startswith("s3://") or not location.endswith("/") or "'" in location:
        raise MlopsError(f"location {location!r}: give an s3:// prefix ending in '/'")
    quoted = ".".join(f"`{part}`" for part in name.split("."))
    columns = ",\n".join(f"  `{column}` {kind}" for column, kind in _ATHENA_COLUMNS.items())
    hours = ",".join(f"{h:02d}" for h in range(24))
    properties = {
        "projection.enabled": "true",
        "projection.dt.type": "date",
        "projection.dt.format": "yyyy-MM-dd",
        "projection.dt.range": f"{first_day:%Y-%m-%d},NOW",
        "projection.dt.interval": "1",
        "projection.dt.interval.unit": "DAYS",
        # enum, not integer: the partition column is text, and so is the folder name.
        "projection.hour.type": "enum",
        "projection.hour.values": hours,
        "storage.location.template": location + "dt=${dt}/hour=${hour}/",
    }
    listed = ",\n".join(f"  '{key}' = '{value}'" for key, value in properties.items())
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {quoted} (\n{columns}\n)\n"
        "PARTITIONED BY (`dt` string, `hour` string)\n"
        "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\n"
        "STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'\n"
        "OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'\n"
        f"LOCATION '{location}'\n"
        f"TBLPROPERTIES (\n{listed}\n)"
    )
