"""Maintenance: keeping the served model current, on the spec's rules.

promotion.py decides whether a challenger replaces production (pure); challenger.py
scores both versions on the same rows with their ONNX models and acts on the decision.
May import: every stage below it (store, data, registry, monitoring, serving). Never
training or scikit-learn: comparisons run the served artifacts, not training objects.
"""
