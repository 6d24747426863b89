"""Test-session defaults: fast mode for executed notebooks unless set otherwise."""
import os

# nbval's kernels inherit this process's environment.
os.environ.setdefault("UNMASKING_CNNS_FAST", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Lessons under nbval also run their worked solutions and drive their explorers.
pytest_plugins = ["tests.nbplugin"]
