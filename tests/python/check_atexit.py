"""A program that never calls herd.shutdown(): drops a handle it never waited on and leaves
another unwaited, then returns. The atexit hook must shut herd down collectively and the job
must exit 0 (ctest: python_atexit_np2)."""

import numpy as np

import herd

herd.init()
r, n = herd.rank(), herd.size()
kept = herd.push_pull_async(np.full(4, r, np.int32), name="atexit.kept")
herd.push_pull_async(np.full(1000, r, np.float64), name="atexit.dropped")  # dropped at once
res = herd.push_pull(np.ones(2, np.int64), name="atexit.sync")
assert np.all(res == n), res
if r == 0:
    print(f"check_atexit: {n} rank(s) leave without herd.shutdown()")
