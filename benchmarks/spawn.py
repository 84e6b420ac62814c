"""A small launcher, so a measured child's peak memory is its own (stdlib only).

    python -m benchmarks.spawn REPORT.json -- COMMAND [ARG ...]

Linux keeps a process's peak RSS across exec, and a forked child starts with its
parent's pages: a child forked straight from the benchmark process (hundreds of MB)
would report at least that much. This launcher is small; it runs COMMAND (stdout and
stderr inherited), and writes COMMAND's wall time (spawn to exit), peak RSS and exit code
to REPORT.json. It exits with COMMAND's exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main() -> int:
    """Run the command after `--` and report on it."""
    report, separator, *command = sys.argv[1:]
    if separator != "--" or not command:
        raise SystemExit(__doc__)
    spawned_at = time.time()  # epoch, for children that report epoch times of their own
    start = time.perf_counter()
    child = subprocess.Popen(command)
    # wait4, not wait: it also returns the child's own resource usage.
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = code = os.waitstatus_to_exitcode(status)
    with open(report, "w") as out:
        # Linux reports ru_maxrss in KiB.
        json.dump(
            {
                "wall_s": wall,
                "max_rss_kib": usage.ru_maxrss,
                "returncode": code,
                "spawned_at": spawned_at,
                "exited_at": spawned_at + wall,
            },
            out,
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
