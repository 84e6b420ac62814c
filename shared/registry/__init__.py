"""Registry: what versions a model has, where its aliases point, and what happened to it.

Owns `models/<model>/registry.json` (records.py: the record and pure decisions on it;
registry.py: compare-and-swap writes), each version's `metadata.json` record, and the
append-only audit trail under `audit/<model>/`.
May import: shared.errors, shared.store, shared.data; never training, serving or
monitoring, which all read it.
"""
