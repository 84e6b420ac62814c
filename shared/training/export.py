"""Export a fitted pipeline to ONNX and check the export against the pipeline.

The parity check is not a formality: a float32 step in an imputed constant or a
scaled value can flip a tree split, so a version is registered only if the ONNX
graph reproduces scikit-learn's outputs on held-out rows within the spec's tolerance.
Tree thresholds are written so that no float32 input can flip a split (see
_round_thresholds_down).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from onnx import GraphProto, ModelProto, TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.pipeline import Pipeline

from shared.data.spec import ParityTolerance, Task
from shared.errors import ExportError
from shared.registry.metadata import (
    COLUMNS_INPUT,
    NUMERIC_INPUT,
    OUTPUT_NAMES,
    FeatureSchema,
    ParityReport,
)
from shared.serving.runtime import ModelInput, OnnxModel

# ai.onnx.ml's LabelEncoder maps strings to floats from this version of the domain on.
_LABEL_ENCODER_OPSET = 2
# The code of a category the model never saw: OneHotEncoder(handle_unknown="ignore") gives
# it no column, as scikit-learn does for a value outside its categories.
_UNKNOWN_CODE = -1.0

LABEL_OUTPUT, PROBABILITIES_OUTPUT, REGRESSION_OUTPUT = OUTPUT_NAMES
_TREE_ENSEMBLES = {"TreeEnsembleClassifier", "TreeEnsembleRegressor"}


def export_pipeline(
    pipeline: Pipeline,
    features: Sequence[FeatureSchema],
    task: Task,
    categories: Sequence[Sequence[str]],
    codes: Sequence[np.ndarray] | None = None,
) -> bytes:
    """The ONNX bytes of `pipeline`, fitted on PreparedData.X (numeric first, then codes).

    Inputs: NUMERIC_INPUT [N, k] float for the k numeric features, then one [N, 1] string
    tensor per categorical feature, whose values `categories` (one sequence per categorical
    feature, in order) maps to the codes the pipeline learnt from: each value's position,
    or `codes[i][position]` when rare categories share a code (rare_category_codes).
    """
    n_numeric = sum(f.kind == "numeric" for f in features)
    encoded = len(features) > n_numeric
    inner = COLUMNS_INPUT if encoded else NUMERIC_INPUT
    estimator = pipeline.steps[-1][1]
    # zipmap=False: probabilities as one [N, classes] tensor, which serving returns as is.
    options = {id(estimator): {"zipmap": False}} if task == "classification" else None
    try:
        model: ModelProto = convert_sklearn(
            pipeline,
            initial_types=[(inner, FloatTensorType([None, len(features)]))],
            options=options,
        )
    except Exception as exc:  # skl2onnx raises many unrelated types for unsupported parts
        raise ExportError(f"skl2onnx could not convert the pipeline: {exc}") from exc
    _round_thresholds_down(model, estimator)
    if encoded:
        if codes is None:
            codes = [np.arange(len(values)) for values in categories]
        _encode_categories(model, features, categories, codes)
    outputs = [o.name for o in model.graph.output]
    expected = (
        [LABEL_OUTPUT, PROBABILITIES_OUTPUT] if task == "classification" else [REGRESSION_OUTPUT]
    )
    if outputs != expected:
        raise ExportError(f"exported graph has outputs {outputs}, expected {expected}")
    return bytes(model.SerializeToString())


def float32_at_or_below(threshold: float) -> float:
    """The largest float32 not above `threshold`.

    For a float32 x, `x <= threshold` holds exactly when `x <= float32_at_or_below(threshold)`;
    the nearest float32 (what a cast gives) may lie above the threshold, and then the value
    that rounds to it goes left in the graph and right in scikit-learn.
    """
    with np.errstate(over="ignore"):  # beyond float32's range: inf, stepped down below
        nearest = np.float32(threshold)
    if float(nearest) > threshold:
        nearest = np.nextafter(nearest, np.float32(-np.inf))
    return float(nearest)


def _tree_thresholds(estimator: Any) -> dict[tuple[int, int], float] | None:
    """(tree id, node id) -> the float64 threshold scikit-learn compares with, for each split,
    numbered as skl2onnx numbers the trees and nodes; None for an estimator without trees.

    Forests compare float32 inputs (they cast X) and HistGradientBoosting compares float64
    copies of them; either way the input is a float32 value held against a float64 threshold.
    """
    if hasattr(estimator, "estimators_"):  # RandomForest*: one tree per estimator
        return {
            (t, int(n)): float(tree.tree_.threshold[n])
            for t, tree in enumerate(estimator.estimators_)
            for n in np.flatnonzero(tree.tree_.children_left != -1)
        }
    predictors = getattr(estimator, "_predictors", None)
    if predictors is None:
        return None
    # HistGradientBoosting*: per iteration one tree per output (per class when multiclass),
    # numbered iteration * outputs + output.
    thresholds = {}
    for i, trees in enumerate(predictors):
        for k, tree in enumerate(trees):
            tree_id = i * len(trees) + k if len(trees) > 1 else i
            for n, node in enumerate(tree.nodes):
                if not node["is_leaf"]:
                    thresholds[(tree_id, n)] = float(node["num_threshold"])
    return thresholds


def _round_thresholds_down(model: ModelProto, estimator: Any) -> None:
    """Write each split's threshold as the largest float32 not above scikit-learn's own.

    skl2onnx casts HistGradientBoosting's thresholds to the nearest float32, which can sit
    above the float64 threshold: a value between them (12.1 as float32, 12.100000381, against
    12.0999999046) then takes the other branch. Forests get the same rule from skl2onnx
    already; it is applied to every tree here so that no export depends on which does.
    """
    thresholds = _tree_thresholds(estimator)
    if thresholds is None:
        return
    for node in model.graph.node:
        if node.op_type not in _TREE_ENSEMBLES:
            continue
        attrs = {a.name: a for a in node.attribute}
        if "nodes_values" not in attrs:
            raise ExportError(f"{node.op_type} has no nodes_values: its thresholds are unknown")
        values = attrs["nodes_values"].floats
        for i, (tree, number, mode) in enumerate(
            zip(
                attrs["nodes_treeids"].ints,
                attrs["nodes_nodeids"].ints,
                attrs["nodes_modes"].strings,
                strict=True,
            )
        ):
            if mode == b"LEAF":
                continue
            threshold = thresholds.get((tree, number))
            if mode != b"BRANCH_LEQ" or threshold is None:
                raise ExportError(
                    f"{node.op_type} tree {tree} node {number} ({mode.decode()}) matches no "
                    "split of the fitted trees: its threshold cannot be set as scikit-learn's"
                )
            below = float32_at_or_below(threshold)
            above = float(np.nextafter(np.float32(below), np.float32(np.inf)))
            # skl2onnx wrote the nearest float32 or the one below: anything else means the
            # numbering is not the fitted trees' and the rewrite would scramble the model.
            if values[i] not in (below, above):
                raise ExportError(
                    f"{node.op_type} tree {tree} node {number}: threshold {values[i]!r} is not "
                    f"scikit-learn's {threshold!r} as float32"
                )
            values[i] = below


def _encode_categories(
    model: ModelProto,
    features: Sequence[FeatureSchema],
    categories: Sequence[Sequence[str]],
    codes: Sequence[np.ndarray],
) -> None:
    """Put in front of the graph the step from each category's name to its code.

    The graph's input COLUMNS_INPUT gives way to the served inputs: the numeric matrix as it is,
    and per categorical feature a LabelEncoder (string to float code), concatenated as the
    pipeline's columns were.
    """
    graph = model.graph
    numeric = [f for f in features if f.kind == "numeric"]
    categorical = [f for f in features if f.kind == "categorical"]
    served = {f.input_name for f in categorical} | ({NUMERIC_INPUT} if numeric else set())
    taken = _names_in(graph) | served
    # skl2onnx named its tensors knowing only COLUMNS_INPUT: one may carry a served input's
    # name (a feature called "variable", say), which must name the input alone.
    _rename_tensors(
        graph, {name: _fresh(f"{name}_inner", taken) for name in served & _names_in(graph)}
    )
    inputs, parts, nodes = [], [], []
    if numeric:
        inputs.append(
            helper.make_tensor_value_info(NUMERIC_INPUT, TensorProto.FLOAT, [None, len(numeric)])
        )
        parts.append(NUMERIC_INPUT)
    for feature, values, value_codes in zip(categorical, categories, codes, strict=True):
        code = _fresh(f"{feature.input_name}_code", taken)
        inputs.append(
            helper.make_tensor_value_info(feature.input_name, TensorProto.STRING, [None, 1])
        )
        nodes.append(
            helper.make_node(
                "LabelEncoder",
                [feature.input_name],
                [code],
                name=_fresh(f"{feature.input_name}_encoder", taken),
                domain="ai.onnx.ml",
                keys_strings=list(values),
                values_floats=[float(code) for code in value_codes.tolist()],
                default_float=_UNKNOWN_CODE,
            )
        )
        parts.append(code)
    nodes.append(
        helper.make_node("Concat", parts, [COLUMNS_INPUT], name=_fresh("columns", taken), axis=1)
    )
    del graph.input[:]
    graph.input.extend(inputs)
    fitted = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *fitted])
    for entry in model.opset_import:
        if entry.domain == "ai.onnx.ml":
            entry.version = max(entry.version, _LABEL_ENCODER_OPSET)
            break
    else:
        model.opset_import.append(helper.make_opsetid("ai.onnx.ml", _LABEL_ENCODER_OPSET))


def _names_in(graph: GraphProto) -> set[str]:
    """Every name the graph uses: tensors (inputs, outputs, initializers, intermediate
    values) and nodes."""
    names = {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    names |= {i.name for i in graph.initializer}
    for node in graph.node:
        names |= {*node.input, *node.output, node.name}
    return names


def _rename_tensors(graph: GraphProto, renames: dict[str, str]) -> None:
    """Give tensors new names everywhere the graph refers to them."""
    if not renames:
        return
    outputs = {o.name for o in graph.output}
    if outputs & set(renames):  # onnx_input_names reserves the output names
        raise ExportError(f"an input would take an output's name: {sorted(outputs & set(renames))}")
    for node in graph.node:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                if name in renames:
                    field[i] = renames[name]
    for entry in (*graph.initializer, *graph.value_info):
        if entry.name in renames:
            entry.name = renames[entry.name]


def _fresh(name: str, taken: set[str]) -> str:
    """`name`, or `name_2`, `name_3`...: the first the graph does not use yet."""
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def opsets_of(onnx_bytes: bytes) -> dict[str, int]:
    """The operator-set versions an artifact needs, by domain ('' is the ONNX core)."""
    model = ModelProto()
    model.ParseFromString(onnx_bytes)
    return {entry.domain or "ai.onnx": int(entry.version) for entry in model.opset_import}


def check_parity(
    pipeline: Pipeline,
    onnx_model: OnnxModel,
    X: np.ndarray,
    batch: ModelInput,
    task: Task,
    tolerance: ParityTolerance,
) -> tuple[ParityReport, dict[str, np.ndarray]]:
    """Compare ONNX on `batch` with scikit-learn on `X`, the same rows as the pipeline takes
    them; also return the ONNX outputs for reuse."""
    outputs = onnx_model.run(onnx_model.feed(batch))
    label_mismatches = 0
    if task == "classification":
        expected = np.asarray(pipeline.predict_proba(X), dtype=np.float64)
        got = outputs[PROBABILITIES_OUTPUT].astype(np.float64)
        sk_labels = np.asarray(pipeline.predict(X))
        label_mismatches = int((outputs[LABEL_OUTPUT].ravel() != sk_labels).sum())
    else:
        expected = np.asarray(pipeline.predict(X), dtype=np.float64).reshape(-1, 1)
        got = outputs[REGRESSION_OUTPUT].astype(np.float64).reshape(-1, 1)
    diff = np.abs(got - expected)
    allowed = tolerance.atol + tolerance.rtol * np.abs(expected)
    # "not <=" so that a NaN output (which compares False to everything) is a violation.
    violations = int((~(diff <= allowed)).any(axis=1).sum())
    report = ParityReport(
        rows=int(X.shape[0]),
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        atol=tolerance.atol,
        rtol=tolerance.rtol,
        violations=violations,
        label_mismatches=label_mismatches,
        # A flipped label with probabilities inside tolerance is a tie broken differently;
        # it is reported, but only probability/value violations fail the check.
        passed=violations == 0,
    )
    return report, outputs
