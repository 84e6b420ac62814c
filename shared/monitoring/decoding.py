"""Fast reading of capture files for the check: typed rows, feature columns in one pass.

`decode_capture_file` gives general `CaptureRow`s whose features are a dict. The check
reads millions of rows, so it decodes into a struct made for the model's features
(msgspec builds no dict per row and checks each value's type in C) and pulls a whole
numeric matrix out with one attribute getter per row. Both give the same counts.
"""

from __future__ import annotations

import gzip
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import msgspec
import numpy as np

from shared.errors import MlopsError
from shared.monitoring.capture import CAPTURE_SCHEMA_VERSION, CaptureRow
from shared.monitoring.schema import check_schema


class FeatureAccess(Protocol):
    """How to read feature values out of decoded rows."""

    def numeric(self, rows: Sequence[Any], names: Sequence[str]) -> np.ndarray:
        """A float64 [rows, names] matrix, NaN where missing."""
        ...

    def column(self, rows: Sequence[Any], name: str) -> list[object]:
        """One feature's values (None where missing)."""
        ...


def _matrix(values: list[Any], n_rows: int, n_columns: int, names: Sequence[str]) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64).reshape(n_rows, n_columns)
    except (TypeError, ValueError):
        for j, name in enumerate(names):
            for row in values:
                value = row[j] if n_columns > 1 else row
                if value is not None and not isinstance(value, int | float):
                    raise MlopsError(
                        f"numeric feature {name!r} holds {str(value)[:40]!r}"
                    ) from None
        raise


class DictAccess:
    """Rows whose `features` is a dict (CaptureRow)."""

    def numeric(self, rows: Sequence[Any], names: Sequence[str]) -> np.ndarray:
        if not names:
            return np.empty((len(rows), 0))
        values = [[r.features.get(n) for n in names] for r in rows]
        return _matrix(values, len(rows), len(names), names)

    def column(self, rows: Sequence[Any], name: str) -> list[object]:
        return [r.features.get(name) for r in rows]


DICT_ACCESS = DictAccess()


class CaptureDecoder:
    """Decodes capture files into rows typed for a set of features (name -> kind)."""

    def __init__(self, kinds: Mapping[str, str], *, with_ids: bool = False) -> None:
        names = sorted(kinds)
        self.fields = {name: f"f{i}" for i, name in enumerate(names)}
        feature_fields: list[tuple[str, Any, Any]] = [
            (
                self.fields[name],
                (float | None) if kinds[name] == "numeric" else (int | float | str | None),
                None,
            )
            for name in names
        ]
        features = msgspec.defstruct(
            "CapturedFeatures",
            feature_fields,
            rename={field: name for name, field in self.fields.items()},
            kw_only=True,
        )
        row_fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
            ("version", int),
            ("features", features),
            ("prediction", int | float | str | None),
            ("schema_version", int, CAPTURE_SCHEMA_VERSION),
            ("role", str, "served"),
            ("probabilities", dict[str, float] | None, None),
        ]
        if with_ids:
            row_fields += [("capture_id", str), ("row", int), ("request_id", str)]
        row_type = msgspec.defstruct("CapturedRow", row_fields, kw_only=True)
        self._decoder = msgspec.json.Decoder(row_type)
        self._line_decoder = msgspec.json.Decoder(CaptureRow)

    def decode(self, body: bytes, key: str) -> list[Any]:
        """The rows of one gzip JSON Lines capture object."""
        try:
            text = gzip.decompress(body)
        except (OSError, EOFError) as exc:
            raise MlopsError(f"{key}: not a gzip file ({exc})") from None
        try:
            rows: list[Any] = self._decoder.decode_lines(text)
        except msgspec.DecodeError:
            # Find the line to name in the error (slow path: errors only).
            for number, line in enumerate(text.splitlines(), start=1):
                try:
                    if line.strip():
                        self._decoder.decode(line)
                except msgspec.DecodeError as exc:
                    raise MlopsError(f"{key} line {number}: {str(exc)[:200]}") from None
            raise
        newest = max((r.schema_version for r in rows), default=CAPTURE_SCHEMA_VERSION)
        check_schema("capture", newest, CAPTURE_SCHEMA_VERSION, key)
        return rows

    def numeric(self, rows: Sequence[Any], names: Sequence[str]) -> np.ndarray:
        if not names:
            return np.empty((len(rows), 0))
        pick: Callable[[Any], Any] = operator.attrgetter(*(self.fields[n] for n in names))
        features = operator.attrgetter("features")
        values = [pick(f) for f in map(features, rows)]
        return _matrix(values, len(rows), len(names), names)

    def column(self, rows: Sequence[Any], name: str) -> list[object]:
        field = self.fields[name]
        return [getattr(r.features, field) for r in rows]
