"""The Chalice app: wires each function in functions/ to its trigger."""

from __future__ import annotations

import os

from chalice.app import Chalice, S3Event

from functions import training

app = Chalice(app_name="serverless-mlops")

# Chalice reads the bucket name when it builds the deployment, from the stage's
# environment_variables in .chalice/config.json.
DATA_BUCKET = os.environ.get("MLOPS_BUCKET", "serverless-mlops-data")


@app.on_s3_event(
    bucket=DATA_BUCKET, events=["s3:ObjectCreated:*"], prefix="datasets/", suffix=".csv"
)
def on_dataset_uploaded(event: S3Event) -> None:
    """Train the model whose dataset was uploaded."""
    training.handle_s3_event(event.to_dict())
