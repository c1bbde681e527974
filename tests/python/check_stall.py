"""The stall scenario from issue 9, as a new user meets it (run with 2 ranks and
HERD_STALL_TIMEOUT_SECONDS=3): rank 1 never submits a tensor rank 0 reduces with
herd.push_pull. Rank 0 must get a timeout error that carries the stall message (the tensor and
the missing rank), not NotFoundError from waiting again on a released handle; herd stays usable.
"""

import os
import time

import numpy as np
import pytest

import herd


def test_a_stalled_push_pull_raises_the_stall():
    herd.init()
    if herd.size() < 2:
        pytest.skip("needs two ranks")
    # Rank 1 must not submit anything while rank 0 stalls (its op would stall too): it waits
    # for rank 0's marker file (both ranks are children of one launcher on this host).
    marker = f"/tmp/herd-check-stall-{os.getppid()}"
    if herd.rank() == 0:
        t0 = time.monotonic()
        with pytest.raises(herd.HerdTimeoutError) as info:
            herd.push_pull(np.ones(4, np.float32), name="only.rank0")
        waited = time.monotonic() - t0
        err = info.value
        assert isinstance(err, herd.StalledError)
        assert err.status == herd.ERR_STALLED
        assert "only.rank0" in str(err) and "never by rank(s) 1" in str(err)
        assert 2.5 < waited < 15
        # A timed wait tells the two timeouts apart too: the stall is a completion.
        with pytest.raises(herd.StalledError):
            herd.push_pull(np.ones(4, np.float32), name="only.rank0.timed", timeout=60)
        open(marker, "w").close()
    else:
        deadline = time.monotonic() + 60
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.unlink(marker)
    # Still usable, every rank together.
    got = herd.push_pull(np.full(2, float(herd.rank() + 1)), name="after.stall", timeout=30)
    assert got.tolist() == [3.0, 3.0]
