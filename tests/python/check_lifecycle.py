"""Lifetime: runs in its own MPI job (python_lifecycle_np2) because it shuts herd down.

Not named test_*.py so the main suite does not collect it; ctest names the file explicitly.
"""

import numpy as np
import pytest

import herd
from herdtest import WAIT


def test_init_twice_queries_and_declare():
    herd.init()
    herd.init()
    assert herd.is_initialized() and 0 <= herd.rank() < herd.size()


def test_shutdown_fails_pending_ops_and_is_idempotent():
    r, n = herd.rank(), herd.size()
    done = herd.push_pull_async(np.full(3, r, np.int64), name="life.done")
    done_result = done.wait(WAIT)
    finished = herd.push_pull_async(np.full(3, 1, np.int64), name="life.finished")
    # A tensor only this rank submits: pending at shutdown, so it must fail with ShutdownError
    # (with one rank it simply completes).
    lonely = herd.push_pull_async(np.ones(2), name=f"life.lonely.rank{r}")
    herd.shutdown()
    herd.shutdown()
    assert not herd.is_initialized()
    # Submitted by every rank before shutdown: completes, and can be waited on afterwards.
    assert np.all(finished.wait(WAIT) == n)
    if n > 1:
        with pytest.raises(herd.ShutdownError) as e:
            lonely.wait(WAIT)
        assert e.value.status == herd.ERR_SHUTDOWN
    else:
        lonely.wait(WAIT)
    assert np.all(done_result == n * (n - 1) // 2)


def test_calls_after_shutdown_raise():
    with pytest.raises(herd.InvalidUsageError):
        herd.rank()
    with pytest.raises(herd.InvalidUsageError):
        herd.size()
    with pytest.raises(herd.InvalidUsageError):
        herd.local_rank()
    with pytest.raises(herd.InvalidUsageError):
        herd.push_pull(np.ones(2), name="life.after")
    with pytest.raises(herd.InvalidUsageError):
        herd.broadcast(np.ones(2), 0, name="life.after.bc")
