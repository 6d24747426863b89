"""Measure each lesson's peak memory: the resident set of its kernel, cell by cell.

    python tools/lesson_memory.py                  # every lesson, fast mode, one at a time
    python tools/lesson_memory.py 07 09            # lessons 07 and 09
    python tools/lesson_memory.py --full 07        # full quality
    python tools/lesson_memory.py --cells 5 09     # also the 5 cells that raised the peak most

Each lesson runs in a fresh kernel (nbclient, as tools/run_notebooks.py runs them,
without writing anything back). A thread polls the kernel's process tree with psutil
every --interval seconds and sums the resident set sizes (RSS) of the kernel and its
children (and their anonymous part: RSS less the libraries' file-backed pages); the table gives each lesson's peak, its RSS after the last cell and its
wall time. This is the number to size a class's server by (TEACHING.md): one
student's kernel needs about its lesson's peak. Run lessons one at a time on a quiet
machine: the memory does not depend on the load, the times do.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.run_notebooks import select  # noqa: E402

GB = 1e9


def tree_memory(process: psutil.Process) -> tuple[int, int]:
    """RSS and anonymous RSS of a process and all its descendants (0 once it has gone).

    The anonymous part (RSS less file-backed pages, from the kernel's cheap counters)
    leaves out the libraries' code, mostly TensorFlow's (~0.4 GB of a kernel's RSS), which
    a machine holds once for all its kernels: RSS is what one kernel needs alone, the
    anonymous part what each further kernel adds. (psutil's USS reads /proc/PID/smaps:
    0.1-0.2 s per TensorFlow process, too slow to poll.)
    """
    rss = anonymous = 0
    try:
        processes = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    for each in processes:
        try:
            info = each.memory_info()
            rss, anonymous = rss + info.rss, anonymous + info.rss - info.shared
        except psutil.Error:
            pass
    return rss, anonymous


class Poller:
    """Samples a process tree's RSS in a thread; keeps the peak overall and per cell."""

    def __init__(self, interval: float):
        self.interval, self.process = interval, None
        self.peak = self.current = self.peak_uss = 0
        self.cell, self.cell_peaks = None, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self._thread.start()

    def sample(self) -> int:
        rss, uss = tree_memory(self.process)
        self.current, self.peak, self.peak_uss = rss, max(self.peak, rss), max(self.peak_uss, uss)
        if self.cell is not None:
            self.cell_peaks[self.cell] = max(self.cell_peaks.get(self.cell, 0), rss)
        return rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def measure(path: Path, *, fast: bool, interval: float, timeout: int,
            verbose: bool = False) -> dict:
    """Execute one lesson in a fresh kernel; its peak and final RSS, wall time, cell peaks."""
    notebook = nbformat.read(path, as_version=4)
    os.environ["UNMASKING_CNNS_FAST"] = "1" if fast else "0"
    poller = Poller(interval)
    before = {}

    def on_cell_start(cell, cell_index, **_):
        if poller.process is None:
            poller.start(client.km.provisioner.process.pid)
        before[cell_index] = poller.sample()
        poller.cell = cell_index
        if verbose:
            print(f"  {path.name} cell {cell_index}: {poller.current / GB:.2f} GB",
                  file=sys.stderr, flush=True)

    def on_cell_executed(cell, cell_index, **_):
        poller.sample()
        poller.cell = None

    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            on_cell_start=on_cell_start, on_cell_executed=on_cell_executed)
    start, error = time.perf_counter(), None
    try:
        with client.setup_kernel():
            for index, cell in enumerate(notebook.cells):
                client.execute_cell(cell, index)
            final = poller.sample()
    except Exception as failure:  # the peak so far is still worth reporting
        error, final = f"{type(failure).__name__}: {str(failure)[:300]}", poller.current
    finally:
        if poller.process is not None:
            poller.stop()
    seconds = time.perf_counter() - start
    rises = sorted(((poller.cell_peaks[i] - before[i], i) for i in poller.cell_peaks),
                   reverse=True)
    cells = [(i, poller.cell_peaks[i], rise, notebook.cells[i].source.strip().splitlines()[:1])
             for rise, i in rises]
    return {"peak": poller.peak, "peak_uss": poller.peak_uss, "final": final, "error": error,
            "seconds": seconds, "cells": cells}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", help="notebook name prefixes, e.g. 07 09")
    parser.add_argument("--full", action="store_true", help="full quality (default: fast mode)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between samples")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--cells", type=int, default=0, metavar="N",
                        help="also list the N cells whose peak rose most above their start")
    parser.add_argument("--verbose", action="store_true",
                        help="print each cell's index and RSS as it starts (to stderr)")
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.cells < 0:
        parser.error("--interval must be positive and --cells not negative")

    rows, failed = [], False
    for path in select(args.lessons):
        result = measure(path, fast=not args.full, interval=args.interval,
                         timeout=args.timeout, verbose=args.verbose)
        if result["error"]:  # report every lesson, then fail
            reached = max((cell[0] for cell in result["cells"]), default="?")
            print(f"{path.name}: FAILED at cell {reached} (the peak so far below): "
                  f"{result['error']}", flush=True)
            failed = True
        rows.append((path.name, result))
        print(f"{path.name}: peak {result['peak'] / GB:.2f} GB (anonymous "
              f"{result['peak_uss'] / GB:.2f} GB), after the last cell "
              f"{result['final'] / GB:.2f} GB, {result['seconds']:.0f} s", flush=True)
        for index, peak, rise, first in result["cells"][:args.cells]:
            print(f"    cell {index}: peak {peak / GB:.2f} GB (+{rise / GB:.2f} GB)  "
                  f"{first[0][:70] if first else ''}", flush=True)
    mode = "fast" if not args.full else "full"
    print(f"\n| lesson ({mode} mode) | peak RSS (GB) | peak anonymous RSS (GB) | after the last cell "
          "(GB) | wall (s) |\n|---|---:|---:|---:|---:|")
    for name, result in rows:
        print(f"| {name}{' (failed)' if result['error'] else ''} | {result['peak'] / GB:.2f} "
              f"| {result['peak_uss'] / GB:.2f} | {result['final'] / GB:.2f} "
              f"| {result['seconds']:.0f} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
