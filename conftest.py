"""Test-session defaults: fast mode for executed notebooks unless set otherwise, and how many
worker processes ``-n auto`` starts."""
import os

# nbval's kernels inherit this process's environment.
os.environ.setdefault("UNMASKING_CNNS_FAST", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Lessons under nbval also run their worked solutions and drive their explorers.
pytest_plugins = ["tests.nbplugin"]


# Each worker holds TensorFlow and a model, and a lesson's kernel beside it: about 3 GB.
WORKER_MEMORY = 3 * 2**30


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pytest.ini): one worker per core this process may run on (taskset and
    container limits count, unlike a plain count of the machine's cores), and no more than
    the free memory holds."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        import psutil
    except ImportError:
        return cores or 1
    return max(1, min(cores or 1, psutil.virtual_memory().available // WORKER_MEMORY))
