"""Runs the herd.torch tests as one MPI job (the agreement checks of tests/python/conftest.py).

torch is imported before herd on purpose: a libherd that links the system's CUDA and NCCL,
loaded RTLD_GLOBAL first, breaks torch's own CUDA libraries (test_import_order.py checks both
orders in fresh interpreters).
"""

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

import herd  # noqa: E402
from herdtest import WAIT  # noqa: E402


def pytest_configure(config):
    herd.init()
    config.herd_rank = herd.rank()
    torch.set_num_threads(1)  # 2 ranks on 2 shared cores: no intra-op thread pools


def pytest_collection_finish(session):
    n = torch.tensor([len(session.items)], dtype=torch.int64).numpy()
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
    failed = torch.zeros(herd.size(), dtype=torch.int32).numpy()
    failed[herd.rank()] = 1 if getattr(request.node, "herd_failed", False) else 0
    herd.push_pull(failed, name=f"pytest.outcome.{_test_index[0]}", out=failed, timeout=WAIT)
    others = [r for r in range(herd.size()) if failed[r] and r != herd.rank()]
    if others and not failed[herd.rank()]:
        pytest.fail(f"failed on rank(s) {', '.join(map(str, others))}", pytrace=False)


def pytest_report_header(config):
    return (f"herd {herd.version()} from {herd.library_path}; torch {torch.__version__}; "
            f"rank {herd.rank()} of {herd.size()}")


def pytest_terminal_summary(terminalreporter, config):
    terminalreporter.write_line(f"[herd rank {config.herd_rank}]")
