"""The common library of serverless-mlops: storage, registry, data, training, ONNX, profiles."""

# The one place the version lives (pyproject.toml reads it); it travels inside the Lambda zip.
__version__ = "0.1.0"
