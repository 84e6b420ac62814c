"""Training: from a dataset object to a registered, checked ONNX version.

pipeline.py fits a scikit-learn pipeline and scores it; export.py turns it into ONNX and
checks parity; job.py runs the whole job and registers the version; model_card.py
renders the human-readable card.
May import: everything below it (store, data, registry, serving's ONNX runtime for the
parity check), scikit-learn and skl2onnx. Nothing imports training but functions/.
"""
