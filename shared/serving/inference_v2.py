"""The Open Inference Protocol (KServe V2) over HTTP/REST, for registered versions.

Inputs are either one tensor per feature (named as in the model metadata, shape [N]
or [N, 1], a numeric datatype for numeric features and BYTES for categorical ones),
or, when every feature is numeric, a single [N, F] tensor whose columns follow the
metadata order (any name that is not a feature name, e.g. "input-0").
Outputs: ``label`` [N] and ``probabilities`` [N, C] (classification; the class order
is in the response's ``parameters.classes``) or ``prediction`` [N] (regression).
Any input or output may travel as raw bytes instead (shared/binary_tensors.py).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from shared.errors import BadRequest, quoted
from shared.serving import binary_tensors
from shared.serving.cache import LoadedModel, Prediction
from shared.serving.inputs import (
    check_body,
    check_numbers,
    check_rows,
    feature_mismatch,
    float_matrix,
    json_error,
    quote_names,
    string_column,
)
from shared.serving.runtime import ModelInput

PLATFORM = "onnxruntime_onnx"
NUMERIC_DATATYPES = frozenset({"FP32", "FP64", "INT32", "INT64"})
INTEGER_DATATYPES = frozenset({"INT32", "INT64"})
_INT_RANGE = {"INT32": 2**31, "INT64": 2**63}
INT64_LIMIT = 2**63
MAX_RANK = 8  # the model takes [N], [N, 1] or [N, F]; anything longer is refused later


class RequestInput(msgspec.Struct, forbid_unknown_fields=True):
    """One input tensor of an inference request."""

    name: str
    shape: list[int]
    datatype: str
    data: list[Any] | None = None  # absent when the tensor travels as binary data
    parameters: dict[str, Any] | None = None


class RequestOutput(msgspec.Struct, forbid_unknown_fields=True):
    """An output the caller asks for."""

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The inference request JSON object."""

    inputs: list[RequestInput]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[RequestOutput] | None = None


@dataclass(frozen=True)
class DecodedRequest:
    """The request object and the raw bytes of its binary inputs, by input name."""

    request: InferenceRequest
    binary: dict[str, bytes]


def parse_request(body: bytes, header_length: str | None = None) -> DecodedRequest:
    """Decode and validate the request (JSON, then any binary tensor data after it)."""
    json_part, binary = binary_tensors.split_body(check_body(body), header_length)
    try:
        request = msgspec.json.decode(json_part, type=InferenceRequest)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid inference request: {str(exc)[:200]}") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise json_error(exc) from None
    sizes: list[tuple[str, int]] = []
    for tensor in request.inputs:
        if len(tensor.shape) > MAX_RANK or any(d >= INT64_LIMIT for d in tensor.shape):
            # Before anything multiplies or prints the dimensions (msgspec decodes integers
            # of up to 4,300 digits): the protocol's dimensions are int64.
            raise BadRequest(
                f"{_input(tensor)}: shape {quoted(tensor.shape)} must have at most "
                f"{MAX_RANK} int64 dimensions"
            )
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            if tensor.data is None:
                raise BadRequest(f"{_input(tensor)} has neither data nor binary_data_size")
            continue
        if type(size) is not int or size < 0:
            raise BadRequest(f"{_input(tensor)}: binary_data_size must be a byte count")
        if tensor.data is not None:
            raise BadRequest(f"{_input(tensor)} has both data and binary_data_size")
        sizes.append((tensor.name, size))
    return DecodedRequest(request, binary_tensors.binary_sizes(binary, sizes))


def _input(tensor: RequestInput) -> str:
    return f"input {quoted(tensor.name)}"


def _flatten(tensor: RequestInput) -> list[Any]:
    # Tensor data may be flat or nested row-major; either way it must match the shape.
    flat: list[Any] = []
    stack: list[Any] = [tensor.data or []]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    _check_size(tensor, len(flat))
    return flat


def _numeric(tensor: RequestInput, raw: bytes | None = None) -> np.ndarray:
    """The tensor's numbers as float64 in its shape; types, ranges and size checked."""
    if tensor.datatype not in NUMERIC_DATATYPES:
        raise BadRequest(
            f"{_input(tensor)}: datatype {quoted(tensor.datatype)} not accepted for a "
            f"numeric feature; use one of {sorted(NUMERIC_DATATYPES)}"
        )

    def where(i: int) -> str:
        return f"{_input(tensor)} element {i}"

    if raw is not None:
        _check_size(tensor, math.prod(tensor.shape))
        values = binary_tensors.decode_numbers(tensor.name, tensor.datatype, tensor.shape, raw)
        # Binary floats can hold NaN (a missing value, imputed) and +-inf (refused here).
        return float_matrix(values.ravel(), where).reshape(tensor.shape)
    integer = tensor.datatype in INTEGER_DATATYPES
    data = tensor.data or []
    nested = bool(data) and isinstance(data[0], list)
    expected: Any = int if integer else float
    try:
        # One C-level pass for the usual flat or [rows][columns] data.
        msgspec.convert(data, list[list[expected]] if nested else list[expected])
    except msgspec.ValidationError:
        _name_bad_element(tensor, integer)
    try:
        # Integers are range-checked as the integers they are: through float64, 2**63 - 1
        # rounded up and was refused, and values just below -2**63 rounded into range.
        values = np.array(data, dtype=np.int64 if integer else np.float64)
    except ValueError:
        raise BadRequest(f"{_input(tensor)}: nested data is ragged") from None
    except OverflowError:
        if integer:
            _name_out_of_range(tensor)
        raise BadRequest(f"{_input(tensor)}: a number is outside the float32 range") from None
    _check_size(tensor, values.size)
    if nested and list(values.shape) != tensor.shape:
        # Flat data is read row-major into the shape; nested data must mirror it.
        raise BadRequest(
            f"{_input(tensor)}: nested data has shape {list(values.shape)}, "
            f"the tensor says {quoted(tensor.shape)}"
        )
    if integer:
        limit = _INT_RANGE[tensor.datatype]
        if values.size and (values.min() < -limit or values.max() >= limit):
            _name_out_of_range(tensor)
        values = values.astype(np.float64)
    return float_matrix(values.ravel(), where).reshape(tensor.shape)


def _name_out_of_range(tensor: RequestInput) -> None:
    """Raise a message naming the first integer outside the datatype (errors only)."""
    limit = _INT_RANGE[tensor.datatype]
    for i, value in enumerate(_flatten(tensor)):
        if not -limit <= value < limit:
            raise BadRequest(
                f"{_input(tensor)} element {i}: {quoted(value)} overflows {tensor.datatype} "
                f"({-limit} to {limit - 1})"
            )


def _name_bad_element(tensor: RequestInput, integer: bool) -> None:
    """Raise a message naming the first element of the wrong type (slow path, errors only)."""
    flat = _flatten(tensor)

    def where(i: int) -> str:
        return f"{_input(tensor)} element {i}"

    if integer:
        for i, value in enumerate(flat):
            if type(value) is not int:
                raise BadRequest(
                    f"{where(i)}: expected an {tensor.datatype} integer, got {quoted(value)}"
                )
    check_numbers(flat, where, allow_null=False)


def _check_size(tensor: RequestInput, size: int) -> None:
    if any(d < 0 for d in tensor.shape):
        raise BadRequest(f"{_input(tensor)}: shape {quoted(tensor.shape)} has a negative dimension")
    if size != math.prod(tensor.shape):
        raise BadRequest(
            f"{_input(tensor)}: shape {quoted(tensor.shape)} needs "
            f"{math.prod(tensor.shape)} elements, data has {size}"
        )


def parse_inputs(decoded: DecodedRequest, loaded: LoadedModel) -> ModelInput:
    """A batch from the request's tensors."""
    request, binary = decoded.request, decoded.binary
    features = loaded.features
    names = [f.name for f in features]
    if not request.inputs:
        raise BadRequest("'inputs' is empty: send one tensor per feature")
    first = request.inputs[0]
    if len(request.inputs) == 1 and first.name not in names and len(first.shape) == 2:
        return _parse_matrix(first, loaded, binary.get(first.name))
    seen = [t.name for t in request.inputs]
    given = set(seen)
    # Counted once (a list's count() per name would be quadratic in the number of inputs).
    if len(given) != len(seen) or given != set(names):
        counts = Counter(seen)
        raise feature_mismatch(
            "inputs",
            missing=[n for n in names if n not in given],
            unknown=sorted(given - set(names)),
            duplicate=sorted(n for n, c in counts.items() if c > 1),
            model=loaded.model,
            version=loaded.version,
            takes=names,
        )
    by_name = {t.name: t for t in request.inputs}
    columns_by_name: dict[str, np.ndarray] = {}
    nested_columns: dict[str, np.ndarray] = {}
    n_rows: int | None = None
    for feature in features:
        tensor = by_name[feature.name]
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise BadRequest(
                f"{_input(tensor)}: shape must be [N] or [N, 1], got {quoted(tensor.shape)}"
            )
        raw = binary.get(tensor.name)
        data = tensor.data or []
        nested = bool(data) and isinstance(data[0], list)
        if feature.kind == "numeric" and not nested and raw is None:
            # Flat data's size is checked here; nested or binary data's when it is parsed.
            _check_size(tensor, len(tensor.data or []))
        if n_rows is None:
            n_rows = check_rows(tensor.shape[0])
        elif tensor.shape[0] != n_rows:
            raise BadRequest(f"{_input(tensor)} has {tensor.shape[0]} rows, others have {n_rows}")
        if feature.kind == "numeric":
            if nested or raw is not None:
                nested_columns[feature.name] = _numeric(tensor, raw).ravel()
        else:
            if tensor.datatype != "BYTES":
                raise BadRequest(
                    f"{_input(tensor)}: categorical feature needs datatype BYTES, "
                    f"got {quoted(tensor.datatype)}"
                )

            def where(i: int, name: str = tensor.name) -> str:
                return f"input {quoted(name)} element {i}"

            if raw is None:
                values = _flatten(tensor)
            else:
                values = list(binary_tensors.decode_strings(tensor.name, raw))
                _check_size(tensor, len(values))
            columns_by_name[feature.name] = string_column(values, where, allow_null=False)
    numeric_tensors = [by_name[f.name] for f in loaded.onnx.numeric_features]
    numeric = None if nested_columns else _floats_by_column(numeric_tensors, n_rows or 0)
    if numeric is None:
        # Integer datatypes or nested data: tensor by tensor, each fully checked.
        columns = [
            nested_columns[t.name] if t.name in nested_columns else _numeric(t).ravel()
            for t in numeric_tensors
        ]
        numeric = np.column_stack(columns) if columns else np.empty((n_rows or 0, 0))
    return ModelInput(
        numeric=numeric,
        categorical={f.name: columns_by_name[f.name] for f in loaded.onnx.categorical_features},
    )


def _floats_by_column(tensors: list[RequestInput], n_rows: int) -> np.ndarray | None:
    """The usual case in one pass: flat FP32/FP64 data, one tensor per numeric feature.

    Returns None when the tensors need the per-tensor path (which also names any bad value).
    """
    if not all(
        t.datatype in ("FP32", "FP64")
        and t.data is not None
        and len(t.data) == n_rows
        and not (t.data and isinstance(t.data[0], list))
        for t in tensors
    ):
        return None
    columns = [t.data or [] for t in tensors]
    try:
        msgspec.convert(columns, list[list[float]])
    except msgspec.ValidationError:
        return None
    matrix = np.array(columns, dtype=np.float64).T.copy()  # [features, rows] -> [rows, features]
    names = [t.name for t in tensors]

    def where(i: int) -> str:
        return f"input {quoted(names[i % len(names)])} element {i // len(names)}"

    return float_matrix(matrix, where)


def _parse_matrix(tensor: RequestInput, loaded: LoadedModel, raw: bytes | None) -> ModelInput:
    features = loaded.features
    categorical = [f.name for f in features if f.kind != "numeric"]
    if categorical:
        raise BadRequest(
            f"a single [N, F] input needs an all-numeric model; {loaded.model!r} has categorical "
            f"features {categorical}: send one tensor per feature"
        )
    if tensor.shape[1] != len(features):
        raise BadRequest(
            f"{_input(tensor)}: shape {quoted(tensor.shape)} has {tensor.shape[1]} columns, "
            f"the model takes {len(features)} features"
        )
    check_rows(tensor.shape[0])
    matrix = _numeric(tensor, raw)
    return ModelInput(numeric=matrix, categorical={})


def _label_datatype(values: np.ndarray) -> str:
    return "BYTES" if values.dtype.kind in "OUS" else "INT64"


def output_tensors(loaded: LoadedModel) -> list[dict[str, Any]]:
    """Output tensor metadata: name, datatype and shape (-1 = any number of rows)."""
    meta = loaded.metadata
    if meta.task == "regression":
        return [{"name": "prediction", "datatype": "FP32", "shape": [-1]}]
    classes = meta.classes or []
    label_type = "BYTES" if any(isinstance(c, str) for c in classes) else "INT64"
    return [
        {"name": "label", "datatype": label_type, "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(classes)]},
    ]


def model_metadata(loaded: LoadedModel, versions: list[str]) -> dict[str, Any]:
    """The model metadata response object."""
    return {
        "name": loaded.model,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": [
            {
                "name": f.name,
                "datatype": "FP32" if f.kind == "numeric" else "BYTES",
                "shape": [-1, 1],
            }
            for f in loaded.features
        ],
        "outputs": output_tensors(loaded),
    }


@dataclass(frozen=True)
class WantedOutput:
    """An output to return: its name, whether as binary data, and the top classes asked."""

    name: str
    binary: bool
    # The classification extension (Triton's, which its clients' `class_count` sets as the
    # output's "classification" parameter): the top classes as "value:index:label" text.
    class_count: int | None = None


def _class_count(output: RequestOutput, loaded: LoadedModel) -> int | None:
    count = (output.parameters or {}).get("classification")
    if count is None:
        return None
    classes = loaded.metadata.classes
    if output.name != "probabilities" or not classes:
        raise BadRequest(
            f"output {quoted(output.name)}: the classification parameter applies to a "
            "classifier's 'probabilities' output"
        )
    if type(count) is not int or count < 1:
        raise BadRequest(
            f"output 'probabilities': classification {quoted(count)} must be a number of "
            f"classes, 1 or more (this model has {len(classes)})"
        )
    return min(count, len(classes))  # as Triton does: asking for more returns them all


def wanted_outputs(request: InferenceRequest, loaded: LoadedModel) -> list[WantedOutput]:
    """The outputs to return, all of them by default; checked before running."""
    available = [t["name"] for t in output_tensors(loaded)]
    all_binary = (request.parameters or {}).get("binary_data_output") is True
    if not request.outputs:
        return [WantedOutput(name, all_binary) for name in available]
    asked = [o.name for o in request.outputs]
    unknown = sorted(set(asked) - set(available))
    if unknown:
        raise BadRequest(f"unknown outputs {quote_names(unknown)}; this model has {available}")
    # Refused rather than merged: each copy would add the whole tensor to the response (5,000
    # copies of one output made a 0.27 MB request answer 109 MB), and an answer with fewer
    # outputs than asked for would misalign a client that reads them by position.
    if len(set(asked)) != len(asked):
        duplicate = sorted(name for name, count in Counter(asked).items() if count > 1)
        raise BadRequest(f"duplicate outputs {quote_names(duplicate)}: ask for each output once")
    return [
        WantedOutput(
            o.name,
            (o.parameters or {}).get("binary_data", all_binary) is True,
            _class_count(o, loaded),
        )
        for o in request.outputs
    ]


def top_classes(probabilities: np.ndarray, classes: list[Any], count: int) -> np.ndarray:
    """[N, count] "value:index:label" strings, most probable first (Triton's format)."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :count]
    return np.array(
        [
            [f"{row[i]:f}:{i}:{classes[i]}" for i in top]
            for row, top in zip(probabilities.tolist(), order.tolist(), strict=True)
        ],
        dtype=object,
    ).reshape(len(probabilities), count)


def _output_tensor(name: str, values: np.ndarray, binary: bool) -> tuple[dict[str, Any], bytes]:
    """One response output: JSON data, or metadata plus its raw bytes."""
    datatype = "FP32" if values.dtype.kind == "f" else _label_datatype(values)
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(values.shape)}
    if not binary:
        tensor["data"] = values.ravel().tolist()
        return tensor, b""
    if datatype == "BYTES":
        raw = binary_tensors.encode_strings([str(v) for v in values.ravel()])
    else:
        raw = values.astype(binary_tensors.NUMERIC_DTYPES[datatype]).tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    return tensor, raw


def inference_response(
    loaded: LoadedModel,
    wanted: list[WantedOutput],
    prediction: Prediction,
    request_id: str,
) -> tuple[dict[str, Any], bytes]:
    """The response object, limited to `wanted`, and the bytes of its binary outputs."""
    values: dict[str, np.ndarray] = {}
    if loaded.metadata.task == "regression":
        values["prediction"] = prediction.values.astype(np.float32)
    else:
        values["label"] = prediction.values
        if prediction.probabilities is not None:
            values["probabilities"] = prediction.probabilities.astype(np.float32)
    outputs = []
    chunks = []
    for output in wanted:
        value = values[output.name]
        if output.class_count is not None:
            value = top_classes(value, loaded.metadata.classes or [], output.class_count)
        tensor, raw = _output_tensor(output.name, value, output.binary)
        outputs.append(tensor)
        chunks.append(raw)
    body: dict[str, Any] = {
        "model_name": loaded.model,
        "model_version": str(loaded.version),
        "id": request_id,
        "outputs": outputs,
    }
    if loaded.metadata.classes is not None:
        body["parameters"] = {"classes": loaded.metadata.classes}
    return body, b"".join(chunks)
