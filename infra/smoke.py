"""Smoke checks on the unzipped deployment, run by infra/package.py.

Usage: ``python3.12 -I -S infra/smoke.py {app|training} FOLDER...``. Run by the interpreter
the venv was made from, with -I -S, only the standard library is importable until FOLDERs are
put first on sys.path, as Lambda puts the function's code and then its layers. So an import
that works here works because the package is in the zip (or the layer), not because the
developer's venv has it.

- app: the serving function's view (the app zip alone). `import app` works, loads neither
  scikit-learn, scipy nor pandas, the bundled botocore knows S3's conditional writes and
  Lambda's Invoke, and the registry_admin function refuses a payload it cannot parse.
- training: the training function's view (zip + layer). A LogisticRegression converts with
  skl2onnx and runs in onnxruntime; then real training runs (each estimator kind) register
  versions in a local store in the current directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TRAINING_ONLY = ("sklearn", "scipy", "pandas", "skl2onnx", "onnx")


def isolate(folders: list[str]) -> None:
    leaked = [p for p in sys.path if "site-packages" in p or ".venv" in p]
    if leaked:
        raise SystemExit(f"not isolated: {leaked} on sys.path (run with -I -S)")
    sys.path[0:0] = folders


def loaded_from(module: object, folders: list[str]) -> None:
    origin = str(getattr(module, "__file__", ""))
    if not any(origin.startswith(folder) for folder in folders):
        raise SystemExit(f"{module} was imported from {origin}, outside {folders}")


def check_app(folders: list[str]) -> None:
    import botocore.session
    import numpy
    import onnxruntime

    import app
    from functions import monitoring
    from shared.store.local import LocalStore

    for module in (app, numpy, onnxruntime, botocore.session, monitoring):
        loaded_from(module, folders)
    # The scheduled monitoring function runs from the same zip, with no layer.
    monitoring.handle_schedule({"time": "2026-11-30T12:00:00Z"}, LocalStore(Path.cwd() / "m"))
    training = sorted({m.split(".")[0] for m in sys.modules} & set(TRAINING_ONLY))
    if training:
        raise SystemExit(f"import app and the monitoring check loaded {training}")
    # The registry's compare-and-swap needs PutObject's If-None-Match and If-Match.
    s3 = botocore.session.get_session().get_service_model("s3")
    shape = s3.operation_model("PutObject").input_shape
    missing = {"IfMatch", "IfNoneMatch"} - set(shape.members if shape else ())
    if missing:
        raise SystemExit(f"the bundled botocore's PutObject lacks {sorted(missing)}")
    # botocore keeps only some service models (infra/package.py): S3 must still resolve its
    # endpoint and sign a request. A presigned URL does both and sends nothing.
    client: Any = botocore.session.get_session().create_client(
        "s3", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
    if not url.startswith("https://") or ".amazonaws.com/" not in url:
        raise SystemExit(f"unexpected S3 URL from the bundled botocore: {url}")
    # The admin routes invoke the registry_admin function: Lambda's model must have survived
    # the trimming, and the function must answer (here: refuse an operation it cannot parse).
    lambda_model = botocore.session.get_session().get_service_model("lambda")
    if "Invoke" not in lambda_model.operation_names:
        raise SystemExit("the bundled botocore cannot invoke a Lambda function")
    refused = app.registry_admin({"op": "drop_everything", "model": "m"}, None)
    if refused.get("status") != 400:
        raise SystemExit(f"registry_admin accepted an unknown operation: {refused}")
    print(f"import app: ok; {len(sys.modules)} modules, none of {list(TRAINING_ONLY)}")


def check_training(folders: list[str]) -> None:
    import numpy as np
    import onnxruntime as ort
    import sklearn
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    loaded_from(sklearn, folders)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = LogisticRegression().fit(x, y)
    onx = convert_sklearn(
        model,
        initial_types=[("x", FloatTensorType([None, 3]))],
        options={id(model): {"zipmap": False}},
    )
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {"x": x})
    if not (labels == model.predict(x)).all():
        raise SystemExit("onnxruntime's labels differ from scikit-learn's")
    if not np.allclose(probabilities, model.predict_proba(x), atol=1e-5):
        raise SystemExit("onnxruntime's probabilities differ from scikit-learn's")
    print("LogisticRegression -> skl2onnx -> onnxruntime: ok")

    import functions.training  # noqa: F401  (the training handler's own imports)
    from shared.store.local import LocalStore
    from shared.training.job import train_from_dataset

    store = LocalStore(Path.cwd() / "store")
    header = "a,b,c,colour,target\n"
    rows = [
        f"{a:.4f},{b:.4f},{'' if i % 13 == 0 else f'{c:.4f}'},"
        f"{('red', 'green', 'blue')[i % 3]},{'yes' if a + b > 0 else 'no'}\n"
        for i, (a, b, c) in enumerate(rng.normal(size=(240, 3)))
    ]
    for estimator in ("linear", "random_forest", "gradient_boosting"):
        name = f"smoke-{estimator.replace('_', '-')}"
        store.put(f"specs/{name}.json", json.dumps({"estimator": estimator}).encode())
        store.put(f"datasets/{name}/data.csv", (header + "".join(rows)).encode())
        outcome = train_from_dataset(store, f"datasets/{name}/data.csv", trigger="smoke")
        if outcome.status != "registered":
            raise SystemExit(f"training {estimator} did not register: {outcome}")
        print(f"trained and registered {name} v{outcome.version}")


def main() -> None:
    check, *folders = sys.argv[1:]
    isolate(folders)
    {"app": check_app, "training": check_training}[check](folders)


if __name__ == "__main__":
    main()
