"""Keep memory a training run frees from counting against its peak.

glibc's malloc hands out blocks above a threshold (128 KiB at first) as their own mappings,
which go back to the system when freed; but each time such a block is freed it raises the
threshold to that block's size, up to 32 MiB. After the first large array of a run is freed,
arrays below that size come from the heap instead, where freed memory mostly stays: a fit
that makes and drops one large temporary after another then holds all of them. Setting the
threshold turns that adjustment off (measured: peak RSS of a 100 MB training run 378 MiB
with it, 342 MiB without; `make bench ARGS='--only train_peak_rss_per_csv_mb'`).

The setting is the process's, for good (glibc cannot turn the adjustment back on), and it
costs time where a process makes and drops large buffers in a loop: each is a fresh mapping
(refusing a 12 MB gzip bomb took 17 ms instead of 12). So only the training function sets
it (functions.training), whose process trains and nothing else; `mlops` commands that
train in-process leave the allocator as it is.
"""

from __future__ import annotations

import ctypes
import functools

# From glibc's malloc.h.
_M_MMAP_THRESHOLD = -3
# glibc's own starting value: blocks from 128 KiB up are mapped, whatever was freed before.
_MMAP_THRESHOLD = 128 * 1024


@functools.cache
def map_large_blocks() -> bool:
    """Fix glibc's mmap threshold for this process; False where there is no glibc.

    Once per process: the training function calls it on every invocation of a warm container.
    """
    try:
        # The process's own symbols: libc is loaded already, so nothing is looked up on disk.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
