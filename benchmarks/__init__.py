"""Benchmarks: each figure measured against a reference measured in the same run.

    .venv/bin/python -m benchmarks.run [--quick] [--out PATH] [--only NAME ...] [--profile]

`benchmarks/results.json` (or --out) holds one entry per figure, keyed by the figure's name,
plus "machine" (what ran it) and "run" (command, sizes, duration):

    {"<figure>": {"ours": float | null, "reference": float | null, "ratio": float | null,
                  "goal": str, "met": bool, "unit": str, "details": {...}},
     ...,
     "machine": {...}, "run": {...}}

"unit" says what `ours` and `reference` are measured in; `goal` says how `ratio` (or
`ours`) is judged. These are measurements, not tests: a missed goal does not fail the
command; an error in a benchmark does (exit 1), after the others have run.
"""
