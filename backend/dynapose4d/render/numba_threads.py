"""One threading policy for every numba kernel (the rasteriser, the projection, skinning).

Threading layer: numba tries TBB, then OpenMP, then its own workqueue. GNU OpenMP is not
fork-safe: a forked child (a DataLoader worker, multiprocessing's fork start method) that then
runs a parallel kernel is killed with SIGTERM. TBB and the workqueue are fork-safe and run these
kernels as fast; the workqueue is not re-entrant, so launches from several Python threads take
one lock. Only a default: NUMBA_THREADING_LAYER(_PRIORITY) in the environment still decides,
and a layer another library already started stays. Importing this module sets it, so every
kernel module imports it before its first parallel launch.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numba
import torch

if "NUMBA_THREADING_LAYER" not in os.environ and "NUMBA_THREADING_LAYER_PRIORITY" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = ["tbb", "workqueue", "omp"]
_LAUNCH = threading.Lock()


@contextmanager
def numba_parallel(chunksize: int = 0):
    """Run numba's parallel loops on as many threads as torch uses (one knob for both), one
    launch at a time. ``chunksize`` > 0 hands out iterations dynamically in chunks of that size
    (for work of uneven cost); 0 splits the range evenly between the threads."""
    with _LAUNCH:
        saved = numba.get_num_threads(), numba.get_parallel_chunksize()
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        numba.set_parallel_chunksize(chunksize)
        try:
            yield
        finally:
            numba.set_num_threads(saved[0])
            numba.set_parallel_chunksize(saved[1])
