"""Data: the model spec, dataset validation and preparation, and mergeable profiles.

Owns `specs/<model>.json` and reading `datasets/<model>/...` into checked columns.
May import: shared.errors, shared.store, numpy and msgspec; never scikit-learn, so that
serving and monitoring can read specs and profiles.
"""
