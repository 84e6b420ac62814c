"""Reading a training CSV: every rejection names the place to fix, and good files parse right."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from shared.data.dataset import MISSING_CATEGORY, Feature, PreparedData, prepare
from shared.data.profile import CategoricalProfile, NumericProfile
from shared.data.spec import ModelSpec
from shared.errors import DataError

SOURCE = "datasets/demo/data.csv"
# Every message starts with the data key.
AT = f"^{re.escape(SOURCE)}: "
SPEC = ModelSpec(min_rows=10)
HEADER = "age,city,target"
CITIES = ("Oslo", "Lima", "Pune")


def make_csv(header: str, rows: list[str], newline: str = "\n") -> bytes:
    """A CSV file: the header line, then the rows, each line ended by `newline`."""
    return "".join(line + newline for line in [header, *rows]).encode()


def base_rows(n: int = 12) -> list[str]:
    """Rows of HEADER that prepare() accepts; row i is on line i + 2."""
    return [f"{20 + i},{CITIES[i % 3]},{i % 2}" for i in range(n)]


def read(body: bytes, spec: ModelSpec = SPEC) -> PreparedData:
    """prepare() with the test source."""
    return prepare(body, spec, source=SOURCE)


# --- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b" \r\n\n\t"])
def test_empty_file(body: bytes) -> None:
    with pytest.raises(DataError, match=AT + "the file is empty"):
        read(body)


def test_not_utf8_names_byte_and_line() -> None:
    body = b"age,city,target\n20,M\xfcnchen,1\n"  # \xfc: ü in Latin-1
    with pytest.raises(DataError, match=AT + r"not UTF-8 text: byte 20 \(line 2\) is 0xfc"):
        read(body)


def test_not_utf8_offset_counts_the_bom() -> None:
    body = b"\xef\xbb\xbfage,city,target\n20,M\xfcnchen,1\n"
    with pytest.raises(DataError, match=AT + r"not UTF-8 text: byte 23 \(line 2\)"):
        read(body)


def test_first_line_of_numbers_is_not_a_header() -> None:
    with pytest.raises(DataError, match=AT + "line 1 holds only numbers.*header row"):
        read(make_csv("1.5,2,0", ["2.5,3,1"] * 12))


def test_column_without_name() -> None:
    rows = [row + ",x" for row in base_rows()]
    with pytest.raises(DataError, match=AT + r"column 4 has no name in the header \(line 1\)"):
        read(make_csv(HEADER + ",", rows))


def test_duplicate_column_name() -> None:
    rows = [row + ",1" for row in base_rows()]
    with pytest.raises(
        DataError, match=AT + r"the header \(line 1\) names two columns 'age' \(columns 1 and 4\)"
    ):
        read(make_csv(HEADER + ",age", rows))


def test_ragged_row_names_line_and_field_counts() -> None:
    rows = base_rows()
    rows[3] = "23,Lima,Peru,1"
    rows[6] = "26"
    with pytest.raises(
        DataError,
        match=AT + "line 5 has 4 fields, the header has 3; 2 rows in all have the wrong number "
        "of fields; a value that contains a comma must be in double quotes$",
    ):
        read(make_csv(HEADER, rows))


def test_header_only() -> None:
    with pytest.raises(DataError, match=AT + "the file has a header row but no data rows"):
        read(make_csv(HEADER, []))


def test_fewer_rows_than_min_rows() -> None:
    with pytest.raises(
        DataError, match=AT + r"the file has 11 data rows, fewer than the 12 .*\"min_rows\""
    ):
        read(make_csv(HEADER, base_rows(11)), ModelSpec(min_rows=12))


def test_missing_target_lists_the_columns() -> None:
    with pytest.raises(
        DataError, match=AT + r"no target column 'label'.*the columns are 'age', 'city', 'target'"
    ):
        read(make_csv(HEADER, base_rows()), ModelSpec(target="label", min_rows=10))


@pytest.mark.parametrize(
    ("field", "spec"),
    [
        ("features", ModelSpec(features=["age", "zip"], min_rows=10)),
        ("drop", ModelSpec(drop=["zip"], min_rows=10)),
        ("categorical", ModelSpec(categorical=["zip"], min_rows=10)),
    ],
)
def test_spec_names_unknown_column(field: str, spec: ModelSpec) -> None:
    with pytest.raises(
        DataError, match=AT + f"the spec's \"{field}\" names 'zip', which the file does not have"
    ):
        read(make_csv(HEADER, base_rows()), spec)


def test_unlabeled_rows_are_named() -> None:
    rows = base_rows()
    rows[1] = "21,Lima,"
    rows[3] = "23,Lima,NA"
    with pytest.raises(
        DataError,
        match=AT + r"target column 'target' is empty on 2 of 12 rows \(lines 3 and 5\); "
        "remove the unlabeled rows",
    ):
        read(make_csv(HEADER, rows))


def test_long_lists_of_lines_are_cut_short() -> None:
    rows = [row.rsplit(",", 1)[0] + "," for row in base_rows()]
    rows[10:] = ["30,Oslo,0", "31,Oslo,1"]
    with pytest.raises(DataError, match=r"\(lines 2, 3, 4, 5, 6 and 5 more\)"):
        read(make_csv(HEADER, rows))


def test_feature_column_entirely_empty() -> None:
    rows = ["," + row.split(",", 1)[1] for row in base_rows()]
    with pytest.raises(DataError, match=AT + "column 'age' is empty on every row.*\"drop\""):
        read(make_csv(HEADER, rows))


def test_text_in_a_numeric_column() -> None:
    rows = base_rows()
    rows[4] = "twenty,Oslo,0"
    with pytest.raises(
        DataError,
        match=AT + r"column 'age' holds numbers, but not everywhere: line 6 has 'twenty'; .*"
        'list the column under "categorical"',
    ):
        read(make_csv(HEADER, rows))


def test_text_after_the_probed_rows() -> None:
    """The block pass over numeric-looking columns fails late; each column is judged alone."""
    rows = [f"{i},{i % 7},{i % 2}" for i in range(1200)]
    rows[1100] = "1100,seven,0"
    with pytest.raises(DataError, match=AT + "column 'city' .* line 1102 has 'seven'"):
        read(make_csv(HEADER, rows))


def test_infinite_number() -> None:
    rows = base_rows()
    rows[2] = "-inf,Pune,0"
    with pytest.raises(
        DataError, match=AT + "column 'age' holds numbers that are not finite: line 4 has '-inf'"
    ):
        read(make_csv(HEADER, rows))


@pytest.mark.parametrize(
    ("header", "rows", "spec", "message"),
    [
        ("target", ["1", "0"] * 6, SPEC, "the file has only the target 'target'$"),
        (
            HEADER,
            base_rows(),
            ModelSpec(drop=["age", "city"], min_rows=10),
            "the file has only the target 'target' "
            "and the columns under \"drop\" \\('age', 'city'\\)",
        ),
    ],
)
def test_no_feature_columns_left(
    header: str, rows: list[str], spec: ModelSpec, message: str
) -> None:
    with pytest.raises(DataError, match=AT + "no feature columns are left: " + message):
        read(make_csv(header, rows), spec)


@pytest.mark.parametrize(
    ("labels", "categorical", "why"),
    [
        (("no", "yes"), [], "line 2 has 'no'"),
        (("1.5", "2.5"), ["target"], 'the spec lists it under "categorical"'),
    ],
)
def test_regression_needs_a_numeric_target(
    labels: tuple[str, str], categorical: list[str], why: str
) -> None:
    rows = [f"{20 + i},Oslo,{labels[i % 2]}" for i in range(12)]
    spec = ModelSpec(task="regression", categorical=categorical, min_rows=10)
    with pytest.raises(
        DataError,
        match=AT + "the spec says task \"regression\", but target column 'target' is not "
        f"numeric: {why}$",
    ):
        read(make_csv(HEADER, rows), spec)


def test_single_class() -> None:
    rows = [f"{20 + i},Oslo,yes" for i in range(12)]
    with pytest.raises(DataError, match=AT + "target column 'target' has a single class, 'yes'"):
        read(make_csv(HEADER, rows))


def test_class_with_one_row() -> None:
    rows = base_rows()
    rows[7] = "27,Lima,2"
    with pytest.raises(
        DataError,
        match=AT + r"in target column 'target', class 2 \(line 9\) has only one row",
    ):
        read(make_csv(HEADER, rows))


def test_invalid_csv() -> None:
    rows = base_rows()
    rows[2] = "22,Pune," + "9" * 200_000  # beyond the csv module's field size limit
    with pytest.raises(DataError, match=AT + "line 4 is not valid CSV: field larger"):
        read(make_csv(HEADER, rows))


def test_numbers_with_decimal_commas_are_an_error_naming_the_column_and_the_fix() -> None:
    # As a spreadsheet in a comma-decimal locale quotes them in a comma-separated file.
    rows = [f'{20 + i},"{60 + i},{i % 10}6",{i % 2}' for i in range(200)]
    with pytest.raises(DataError) as caught:
        read(make_csv("age,weight,target", rows))
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: column 'weight' holds numbers written with a comma: ")
    assert "line 2 has '60,06'" in message
    assert "write them with a decimal point" in message
    assert len(message) < 600  # a few values quoted, not 200


def test_a_column_the_spec_calls_categorical_may_hold_commas() -> None:
    rows = [f'{20 + i},"{i % 3},5",{i % 2}' for i in range(60)]
    data = read(make_csv("age,grade,target", rows), ModelSpec(categorical=["grade"], min_rows=10))
    assert data.cells()[0, 1] == "0,5"


def test_a_feature_with_a_category_per_row_is_an_error() -> None:
    rows = [f"{20 + i},customer-{i:04d},{i % 2}" for i in range(100)]
    with pytest.raises(
        DataError,
        match=AT + r"column 'city' has 100 different values in 100 rows, such as 'customer-0000' "
        r"\(line 2\): nearly one category per row.*\"drop\"",
    ):
        read(make_csv(HEADER, rows))
    # Listed under "categorical", the spec has the last word.
    data = read(make_csv(HEADER, rows), ModelSpec(categorical=["city"], min_rows=10))
    assert data.features[1] == Feature("city", "categorical")


@pytest.mark.parametrize("separator", [";", "\t"])
def test_a_file_separated_by_something_else_gets_a_hint(separator: str) -> None:
    rows = [separator.join([f"{20 + i},5", "Oslo", str(i % 2)]) for i in range(12)]
    with pytest.raises(DataError) as caught:
        read(make_csv(separator.join(["age", "city", "target"]), rows))
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: no target column 'target'")
    assert f"the file looks separated by {separator!r}, not by commas" in message


# --- accepted files ---------------------------------------------------------------------------


def test_mixed_columns_with_missing_values() -> None:
    rows = base_rows()
    rows[0] = "NA,,0"
    rows[1] = " 21.5 ,NA,1"
    rows[2] = "null,  Pune ,0"
    rows[3] = " NA ,Oslo,1"  # markers, like numbers, may be padded
    rows[4] = "  ,Lima,0"
    data = read(make_csv(HEADER, rows))

    assert data.features == (Feature("age", "numeric"), Feature("city", "categorical"))
    assert data.n_rows == 12
    assert data.X.dtype == np.float32
    assert data.X.shape == (12, 2)
    cells = data.cells()
    assert math.isnan(cells[0, 0])
    assert cells[1, 0] == 21.5
    assert math.isnan(cells[2, 0])
    # In a categorical column only the empty field is missing, and nothing is stripped.
    assert list(cells[:3, 1]) == [MISSING_CATEGORY, "NA", "  Pune "]
    assert data.n_numeric == 1
    numbers = data.numeric()
    assert numbers.dtype == np.float64
    assert numbers.shape == (12, 1)
    assert np.isnan(numbers[:, 0]).sum() == 4
    assert data.categorical()["city"][2] == "  Pune "
    # Categories are coded by their sorted position, the empty field among them.
    assert data.categories == (("", "  Pune ", "Lima", "NA", "Oslo", "Pune"),)
    assert data.X[:5, 1].tolist() == [0.0, 3.0, 1.0, 4.0, 2.0]


def test_mostly_text_column_is_categorical() -> None:
    rows = base_rows()
    rows[0] = "20,101,0"
    rows[1] = "21,102,1"
    data = read(make_csv(HEADER, rows))
    assert data.features[1] == Feature("city", "categorical")
    assert data.cells()[0, 1] == "101"


def test_string_labels_mean_classification() -> None:
    rows = [f"{20 + i},Oslo,{'yes' if i % 2 else 'no'}" for i in range(12)]
    data = read(make_csv(HEADER, rows))
    assert data.task == "classification"
    assert data.y.dtype == object
    assert list(data.y[:2]) == ["no", "yes"]


def test_integer_labels_mean_classification() -> None:
    data = read(make_csv(HEADER, base_rows()))
    assert data.task == "classification"
    assert data.y.dtype == np.int64
    assert list(data.y[:3]) == [0, 1, 0]


def test_float_target_means_regression() -> None:
    rows = [f"{20 + i},Oslo,{i * 0.5}" for i in range(12)]
    data = read(make_csv(HEADER, rows))
    assert data.task == "regression"
    assert data.y.dtype == np.float64
    assert data.y[3] == 1.5


def test_many_distinct_integers_mean_regression() -> None:
    rows = [f"{20 + i},Oslo,{i * 1000}" for i in range(30)]
    assert read(make_csv(HEADER, rows)).task == "regression"


def test_classification_of_non_integer_numbers_keeps_their_spelling() -> None:
    rows = [f"{20 + i},Oslo,{'0.5' if i % 2 else '1.50'}" for i in range(12)]
    data = read(make_csv(HEADER, rows), ModelSpec(task="classification", min_rows=10))
    assert list(data.y[:2]) == ["1.50", "0.5"]


def test_features_select_and_order_columns() -> None:
    rows = [f"{row},{i * 10}" for i, row in enumerate(base_rows())]
    data = read(
        make_csv(HEADER + ",income", rows), ModelSpec(features=["income", "age"], min_rows=10)
    )
    assert [feature.name for feature in data.features] == ["income", "age"]
    assert list(data.X[1]) == [10.0, 21.0]


def test_drop_removes_columns() -> None:
    data = read(make_csv(HEADER, base_rows()), ModelSpec(drop=["city"], min_rows=10))
    assert data.features == (Feature("age", "numeric"),)


def test_categorical_forces_numeric_looking_column() -> None:
    rows = [f"{row},0{2134 + i}" for i, row in enumerate(base_rows())]
    data = read(make_csv(HEADER + ",zip", rows), ModelSpec(categorical=["zip"], min_rows=10))
    assert data.features[2] == Feature("zip", "categorical")
    assert list(data.cells()[:2, 2]) == ["02134", "02135"]


def test_categorical_target_keeps_label_spelling() -> None:
    rows = [f"{20 + i},Oslo,{'007' if i % 2 else '010'}" for i in range(12)]
    data = read(make_csv(HEADER, rows), ModelSpec(categorical=["target"], min_rows=10))
    assert data.task == "classification"
    assert list(data.y[:2]) == ["010", "007"]


def test_block_pass_failure_keeps_other_numeric_columns() -> None:
    # 'city' looks numeric in the probed rows, then turns to text for most of the file.
    rows = [f"{i},{i if i < 1000 else 'text'},{i % 2}" for i in range(2100)]
    data = read(make_csv(HEADER, rows))
    assert data.features == (Feature("age", "numeric"), Feature("city", "categorical"))
    assert data.X[1500, 0] == 1500.0


def test_utf8_bom_is_skipped() -> None:
    data = read(b"\xef\xbb\xbf" + make_csv(HEADER, base_rows()))
    assert data.features[0].name == "age"


def test_crlf_line_endings() -> None:
    rows = [row + ",note" for row in base_rows()]
    data = read(make_csv(HEADER + ",remark", rows, newline="\r\n"))
    assert list(data.cells()[0]) == [20.0, "Oslo", "note"]  # no "\r" left on the last field
    assert list(data.y[:2]) == [0, 1]


def test_quoted_fields_and_line_numbers() -> None:
    rows = base_rows()
    rows[0] = '20,"Oslo, Norway",0'
    rows[1] = '21,"Lima\nPeru",1'  # a field spanning two lines
    rows[2] = ""  # blank lines are skipped
    rows[5] = "x,Pune,1"
    with pytest.raises(DataError, match=AT + "column 'age' .* line 8 has 'x'"):
        read(make_csv(HEADER, rows))
    rows[5] = "25,Pune,1"
    data = read(make_csv(HEADER, rows))
    assert data.n_rows == 11
    assert list(data.cells()[:2, 1]) == ["Oslo, Norway", "Lima\nPeru"]


def test_numbers_beyond_float32_are_refused() -> None:
    body = b"x,target\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(30)) + b"1e200,1\n"
    with pytest.raises(DataError, match=r"column 'x' holds numbers beyond float32's range"):
        prepare(body, ModelSpec(), source="datasets/m/a.csv")


def test_features_come_numeric_first_as_float32_and_categories_as_sorted_codes() -> None:
    rows = [
        f"{CITIES[i % 3]},{20 + i},{'' if i == 4 else ('pro', 'basic')[i % 2]},{i},{i % 2}"
        for i in range(12)
    ]
    data = read(make_csv("city,age,plan,income,target", rows))

    assert [f.name for f in data.features] == ["age", "income", "city", "plan"]
    assert data.X.dtype == np.dtype(np.float32)
    assert (data.X.shape, data.n_numeric) == ((12, 4), 2)
    assert data.categories == (("Lima", "Oslo", "Pune"), ("", "basic", "pro"))
    # Oslo, Lima, Pune, ... as codes into the sorted categories; the empty plan is code 0.
    assert data.X[:3, 2].tolist() == [1.0, 0.0, 2.0]
    assert data.X[:5, 3].tolist() == [2.0, 1.0, 2.0, 1.0, 0.0]
    picked = data.rows(np.array([4, 1]))
    assert picked.categorical()["city"].tolist() == ["Lima", "Lima"]
    assert picked.categorical()["plan"].tolist() == ["", "basic"]
    assert picked.numeric().tolist() == [[24.0, 4.0], [21.0, 1.0]]


def test_numeric_profiles_are_taken_before_the_rounding_to_float32() -> None:
    rows = [f"{(0.1, 0.3, 0.7)[i % 3]},{CITIES[i % 3]},{i % 2}" for i in range(12)]
    data = read(make_csv(HEADER, rows))
    profile = data.profiles["age"]
    assert isinstance(profile, NumericProfile)
    # 0.7 as written, not float32's 0.699999988...: traffic sends 0.7, and must meet the
    # same bins and the same maximum.
    assert (profile.min, profile.max) == (0.1, 0.7)
    assert float(data.X[:, 0].max()) != 0.7
    assert 0.3 in profile.edges
    assert profile.counts[profile.edges.index(0.3) + 1] >= 4  # 0.3 falls above its edge
    city = data.profiles["city"]
    assert isinstance(city, CategoricalProfile)
    assert city.counts == {"Lima": 4, "Oslo": 4, "Pune": 4}


def test_old_mac_line_endings_are_read() -> None:
    data = read(make_csv(HEADER, base_rows(), newline="\r"))
    assert data.n_rows == 12
    assert data.cells()[:2].tolist() == [[20.0, "Oslo"], [21.0, "Lima"]]
