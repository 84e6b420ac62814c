"""The rows a version was fitted to, as fingerprints (``versions/<n>/fitted-rows.u64``).

A comparison of two versions is fair only on rows neither was fitted to. The registry
keeps, with each version, one 64-bit fingerprint per row it was fitted to (its values as
the model saw them, and its label): sorted, little-endian, 8 bytes a row, so a challenger's
held-out rows can be checked against the champion's fitted rows without re-reading its
training data. A held-out row whose fingerprint is among them is a row the champion may
have learnt (identical values and label count as the same row: a duplicate is a leak).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.errors import MlopsError

FITTED_ROWS_FILE = "fitted-rows.u64"

Fingerprints = npt.NDArray[np.uint64]

_MULTIPLIER = np.uint64(0x100000001B3)  # FNV's 64-bit prime: spreads each column's bits
_NAN32 = np.uint32(0x7FC00000)  # every NaN is one value: a missing cell is a missing cell


def _mix(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: nearby inputs (1.0 and 1.0000001) get unrelated outputs."""
    with np.errstate(over="ignore"):
        z = values.copy()
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def text_hash(text: str) -> int:
    """A stable 64-bit hash of a category or a class (Python's own hash() is salted)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _float32_words(values: npt.NDArray[np.float32]) -> npt.NDArray[np.uint64]:
    canonical = np.where(values == 0, np.float32(0.0), values).astype(np.float32)  # -0.0 is 0.0
    words = canonical.view(np.uint32).copy()
    words[np.isnan(canonical)] = _NAN32
    return words.astype(np.uint64)


def _float64_words(values: npt.NDArray[np.float64]) -> npt.NDArray[np.uint64]:
    canonical = np.where(values == 0, 0.0, values).astype(np.float64)
    words = canonical.view(np.uint64).copy()
    words[np.isnan(canonical)] = np.uint64(0x7FF8000000000000)
    return words


# Rows hashed at a time: the temporaries of a block are a few MB whatever the rows, so
# fingerprinting adds only its output (8 bytes a row) to training's peak memory.
_BLOCK_ROWS = 65_536


Coded = tuple[npt.NDArray[np.uint64], npt.NDArray[Any]]  # (hash of each value, codes)


def fingerprints(
    numeric: npt.NDArray[np.float32],
    categorical: Sequence[Coded],
    labels: Coded | npt.NDArray[np.uint64],
) -> Fingerprints:
    """One fingerprint per row from its numeric values (float32, as the model reads them),
    its categories (each a table of text hashes and the rows' codes into it, in feature
    order) and its label (coded the same way, or one word per row for numbers)."""
    rows = numeric.shape[0]
    out = np.empty(rows, dtype=np.uint64)
    for start in range(0, rows, _BLOCK_ROWS):
        block = slice(start, min(start + _BLOCK_ROWS, rows))
        h = np.full(block.stop - block.start, np.uint64(0xCBF29CE484222325), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j in range(numeric.shape[1]):
                h = (h ^ _mix(_float32_words(numeric[block, j]))) * _MULTIPLIER
            for table, codes in categorical:
                h = (h ^ _mix(table[codes[block].astype(np.intp)])) * _MULTIPLIER
            words = labels[0][labels[1][block]] if isinstance(labels, tuple) else labels[block]
            h = (h ^ _mix(words)) * _MULTIPLIER
        out[block] = _mix(h)
    return out


def coded_texts(values: npt.ArrayLike) -> Coded:
    """Values as (table of text hashes, codes): each distinct value's text hashed once."""
    distinct, codes = np.unique(np.asarray(values), return_inverse=True)
    table = np.array([text_hash(str(v)) for v in distinct.tolist()], dtype=np.uint64)
    return table, codes.reshape(-1)


def label_hashes(labels: npt.ArrayLike, regression: bool) -> Coded | npt.NDArray[np.uint64]:
    """Labels as the fingerprints take them: a class by its text, a number by its float64."""
    values = np.asarray(labels)
    if regression:
        return _float64_words(values.astype(np.float64))
    # Texts as objects sort as they are: no fixed-width str copy (four bytes a character).
    return coded_texts(values)


def row_fingerprints(
    rows: Sequence[Mapping[str, object]],
    labels: Sequence[object],
    numeric: Sequence[str],
    categorical: Sequence[str],
    regression: bool,
    missing_category: str = "",
) -> Fingerprints:
    """Fingerprints of rows given by feature name (None = missing), e.g. held-out rows."""
    matrix = np.array(
        [[math.nan if r.get(n) is None else r.get(n) for n in numeric] for r in rows],
        dtype=np.float64,
    ).reshape(len(rows), len(numeric))
    coded = [
        coded_texts(
            np.array(
                [missing_category if r.get(name) is None else str(r.get(name)) for r in rows],
                dtype=object,
            )
        )
        for name in categorical
    ]
    label_values = np.array([str(v) for v in labels], dtype=object)
    return fingerprints(
        matrix.astype(np.float32),
        coded,
        label_hashes(
            np.array(labels, dtype=np.float64) if regression else label_values, regression
        ),
    )


def encode_fitted_rows(values: Fingerprints) -> bytes:
    """The file's bytes: the distinct fingerprints, sorted, little-endian."""
    return np.unique(values).astype("<u8").tobytes()


def decode_fitted_rows(body: bytes, key: str) -> Fingerprints:
    """The fingerprints of a stored file (sorted, as written)."""
    if len(body) % 8:
        raise MlopsError(f"{key}: {len(body)} bytes is not a whole number of 8-byte rows")
    return np.frombuffer(body, dtype="<u8").astype(np.uint64)


def seen(values: Fingerprints, fitted: Fingerprints) -> npt.NDArray[np.bool_]:
    """Which of `values` are among the sorted `fitted` fingerprints."""
    if fitted.size == 0:
        return np.zeros(values.shape, dtype=bool)
    at = np.searchsorted(fitted, values).clip(0, fitted.size - 1)
    return np.asarray(fitted[at] == values)
