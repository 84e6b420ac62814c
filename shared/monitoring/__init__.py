"""Monitoring: captured traffic, late labels, and the scheduled check for drift and decay.

capture.py writes and reads the capture files serving produces; labels.py reads ground
truth uploaded later; summary.py turns capture rows into mergeable per-window counts over
each version's training baseline; statistics.py holds the tests, distances and metrics;
assessment.py decides a window's verdict (pure); report.py is the stored report record,
html.py its self-contained page; sql.py the same counts as SQL for Athena or DuckDB;
job.py reads, decides, and writes.
May import: shared.errors, shared.store, shared.data, shared.registry, numpy, msgspec.
Never training or serving (serving imports capture.py to record its traffic), and never
scikit-learn, scipy or pandas: the check runs from what training stored.
"""
