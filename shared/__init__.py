"""The common library of serverless-mlops: storage, registry, data, training, ONNX, profiles."""
