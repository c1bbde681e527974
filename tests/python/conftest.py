"""Runs pytest as one MPI job: herd.init() before the tests, and agreement across ranks.

Under `mpiexec -n N python -m pytest`, every rank collects and runs the same tests in the same
order. Two checks keep a failure on one rank from passing silently or hanging the others:
  - after collection, the ranks compare how many tests they collected;
  - after each test, the ranks exchange which of them failed it, and a rank where it passed
    reports an error naming the ranks where it did not. So pytest's summary is alike on every
    rank and mpiexec exits non-zero whichever rank failed.
"""

import numpy as np
import pytest

import herd
from herdtest import WAIT


def pytest_configure(config):
    herd.init()
    config.herd_rank = herd.rank()  # kept for the summary: lifecycle tests shut herd down


def pytest_collection_finish(session):
    n = np.array([len(session.items)], dtype=np.int64)
    lo = herd.push_pull(n, name="pytest.collected.min", op="min", timeout=WAIT)
    hi = herd.push_pull(n, name="pytest.collected.max", op="max", timeout=WAIT)
    if lo[0] != hi[0]:
        pytest.exit(f"ranks collected different numbers of tests ({lo[0]}..{hi[0]})", 3)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        item.herd_failed = True


_test_index = [0]


@pytest.fixture(autouse=True)
def _herd_agree_on_outcome(request):
    yield
    if not herd.is_initialized():  # a lifecycle test shut herd down
        return
    _test_index[0] += 1
    failed = np.zeros(herd.size(), dtype=np.int32)
    failed[herd.rank()] = 1 if getattr(request.node, "herd_failed", False) else 0
    herd.push_pull(failed, name=f"pytest.outcome.{_test_index[0]}", out=failed, timeout=WAIT)
    others = [r for r in np.flatnonzero(failed) if r != herd.rank()]
    if others and not failed[herd.rank()]:
        pytest.fail(f"failed on rank(s) {', '.join(map(str, others))}", pytrace=False)


def pytest_report_header(config):
    return f"herd {herd.version()} from {herd.library_path}; rank {herd.rank()} of {herd.size()}"


def pytest_terminal_summary(terminalreporter, config):
    # Each rank prints its own summary; say whose this is.
    terminalreporter.write_line(f"[herd rank {config.herd_rank}]")
