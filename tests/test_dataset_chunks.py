"""prepare() reads large files in chunks, without csv when it can: both ways agree.

tests/test_dataset.py covers the rules on small files; here the files span several chunks,
so that a value far down a column, quotes, and the fast path for plain files are exercised.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from shared.data import dataset
from shared.data.dataset import prepare
from shared.data.spec import ModelSpec
from shared.errors import DataError

SOURCE = "datasets/big/data.csv"
ROWS = 25_000  # more than two chunks of _CHUNK_ROWS rows


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks of 64 KB, so that plain files of a few hundred KB span several too.
    monkeypatch.setattr(dataset, "_CHUNK_BYTES", 1 << 16)
    assert dataset._CHUNK_ROWS < ROWS


def rows(n: int = ROWS) -> list[str]:
    return [f"{i * 0.5},{'' if i % 97 == 0 else i % 7},c{i % 3},{i % 2}" for i in range(n)]


def body(lines: list[str], newline: str = "\n") -> bytes:
    return newline.join(["x,n,city,target", *lines, ""]).encode()


def test_plain_and_csv_reading_give_the_same_data() -> None:
    plain = prepare(body(rows()), ModelSpec(), source=SOURCE)
    # A carriage return sends the file through the csv module.
    quoted = prepare(body(rows(), "\r\n"), ModelSpec(), source=SOURCE)
    assert plain.n_rows == quoted.n_rows == ROWS
    assert [f.kind for f in plain.features] == ["numeric", "numeric", "categorical"]
    for a, b in ((plain.X, quoted.X), (plain.y, quoted.y)):
        assert a.shape == b.shape
        assert all(
            (x == y) or (x != x and y != y) for x, y in zip(a.ravel(), b.ravel(), strict=True)
        )
    assert np.isnan(float(plain.X[0, 1]))  # the empty field on row 0
    # A category is a code into the sorted categories.
    assert plain.categories == quoted.categories == (("c0", "c1", "c2"),)
    assert plain.X[:4, 2].tolist() == [0.0, 1.0, 2.0, 0.0]


def test_a_stray_value_far_down_a_numeric_column_is_named() -> None:
    lines = rows()
    lines[-3] = lines[-3].replace(lines[-3].split(",")[0], "oops", 1)
    with pytest.raises(DataError) as caught:
        prepare(body(lines), ModelSpec(), source=SOURCE)
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: column 'x' holds numbers, but not everywhere: ")
    assert f"line {ROWS - 1} has 'oops'" in message


def test_an_infinity_far_down_is_named_with_its_spelling() -> None:
    lines = rows()
    lines[-1] = "1e999" + lines[-1][lines[-1].index(",") :]
    with pytest.raises(DataError, match=re.escape(f"line {ROWS + 1} has '1e999'")):
        prepare(body(lines), ModelSpec(), source=SOURCE)


def test_a_field_beyond_the_csv_limit_in_a_plain_file_is_the_csv_error() -> None:
    lines = rows(100)
    lines[50] = "1,2,c" + "9" * 200_000 + ",1"
    with pytest.raises(DataError, match=re.escape(f"{SOURCE}: line 52 is not valid CSV: field")):
        prepare(body(lines), ModelSpec(), source=SOURCE)


def test_a_ragged_row_in_a_late_chunk_is_counted() -> None:
    lines = rows()
    lines[-2] += ",extra"
    lines[5] += ",extra"
    with pytest.raises(DataError) as caught:
        prepare(body(lines), ModelSpec(), source=SOURCE)
    assert str(caught.value).startswith(
        f"{SOURCE}: line 7 has 5 fields, the header has 4; 2 rows in all have the wrong number"
    )


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_categories_come_back_as_the_cells_written_row_for_row(newline: str) -> None:
    import csv
    import io

    rng = np.random.default_rng(7)
    values = ["Oslo", "oslo", " Oslo", "Zürich", "東京", "", "NA", "a,b", "0"]
    picks = rng.integers(0, len(values), size=(ROWS, 2))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(["city", "x", "town", "target"])
    for i, (a, b) in enumerate(picks):
        writer.writerow([values[a], i * 0.5, values[b], i % 2])
    spec = ModelSpec(categorical=["city", "town"])
    data = prepare(out.getvalue().encode(), spec, source=SOURCE)

    # The truth: the csv module's reading of the same file, not prepare's own codes.
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))[1:]
    cells = data.categorical()
    assert cells["city"].tolist() == [row[0] for row in rows]
    assert cells["town"].tolist() == [row[2] for row in rows]
    assert data.numeric()[:, 0].tolist() == [i * 0.5 for i in range(ROWS)]
