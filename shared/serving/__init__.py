"""Serving: checked ONNX sessions and the protocols that feed them.

runtime.py runs an artifact with onnxruntime; cache.py keeps checked sessions per
container; inputs.py holds the limits and checks both protocols share; inference_v2.py
is the Open Inference Protocol (binary_tensors.py its binary tensor data extension);
records_api.py is the friendly records-by-name route.
May import: shared.errors, shared.store, shared.data, shared.registry, numpy,
onnxruntime, msgspec. Never training, scikit-learn, scipy, pandas, skl2onnx or onnx:
this is the cold-start path of the inference function.
"""
