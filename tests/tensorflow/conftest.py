"""Runs the herd.tensorflow tests as one MPI job (the agreement checks of tests/python/conftest.py):
every rank collects the same tests, and a test that fails on one rank fails on all."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

import numpy as np  # noqa: E402

import herd  # noqa: E402
from herdtest import WAIT  # noqa: E402


def pytest_configure(config):
    herd.init()
    config.herd_rank = herd.rank()
    # Several ranks share few cores: no intra-op or inter-op thread pools of their own.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)


def pytest_collection_finish(session):
    n = np.array([len(session.items)], np.int64)
    lo = herd.push_pull(n, name="pytest.collected.min", op="min", timeout=WAIT)
    hi = herd.push_pull(n, name="pytest.collected.max", op="max", timeout=WAIT)
    if lo[0] != hi[0]:
        pytest.exit(f"ranks collected different numbers of tests ({lo[0]}..{hi[0]})", 3)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if outcome.get_result().failed:
        item.herd_failed = True


_test_index = [0]


@pytest.fixture(autouse=True)
def _herd_agree_on_outcome(request):
    yield
    if not herd.is_initialized():
        return
    _test_index[0] += 1
    failed = np.zeros(herd.size(), np.int32)
    failed[herd.rank()] = 1 if getattr(request.node, "herd_failed", False) else 0
    herd.push_pull(failed, name=f"pytest.outcome.{_test_index[0]}", out=failed, timeout=WAIT)
    others = [r for r in range(herd.size()) if failed[r] and r != herd.rank()]
    if others and not failed[herd.rank()]:
        pytest.fail(f"failed on rank(s) {', '.join(map(str, others))}", pytrace=False)


def pytest_report_header(config):
    return (f"herd {herd.version()} from {herd.library_path}; tensorflow {tf.__version__}; "
            f"rank {herd.rank()} of {herd.size()}")


def pytest_terminal_summary(terminalreporter, config):
    terminalreporter.write_line(f"[herd rank {config.herd_rank}]")
