"""A class on a real JupyterHub, measured: N students run lessons at the same time.

    python tools/hub_class.py --students 8                  # lessons 00 then 05, fast mode
    python tools/hub_class.py --students 4 --lessons 03 --full --out class.json

Run it with the Python of an environment that has the course and `jupyterhub`
(requirements.txt, then `pip install ".[hub]"`), with configurable-http-proxy (npm) on
PATH or given by --proxy. It starts the hub of tools/hub/jupyterhub_config.py on a
local port, with its state in a fresh folder, and logs in N students through the hub's
REST API (a service token creates each student and a token of their own; with it the
student starts their server, exactly what a login does). Then, for all students at the
same time, each opens the lessons one after the other, as JupyterLab does: a session
through the single-user server's REST API (behind the hub's proxy) starts a kernel in
the student's copy of the lessons, every code cell is executed over the kernel's
websocket, and the session is closed. A thread samples the resident memory (RSS) of
every kernel's process tree and of every single-user server with psutil, and each
kernel's anonymous part (its RSS less file-backed pages, such as TensorFlow's
libraries, which a machine holds once for all students).

It prints, per student and lesson, the wall time from opening to the last cell and the
kernel's peak RSS; then per lesson the median and worst; the single-user servers'
RSS; and the peak of all students' kernels and servers together. --out writes it all
as JSON. Every lesson must run without an error, or the exit code is 1.
The hub and everything it started is stopped at the end.

It loads every core of the machine for minutes: N kernels compete for the CPUs, which
is the point (lesson times under a class's load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "tools" / "hub" / "jupyterhub_config.py"
LESSONS = REPO / "notebooks"
COURSE_FOLDER = "unmasking-cnns"  # as in the hub configuration
GB = 1e9
# What one student needs, to refuse a class that cannot fit: a lesson kernel's peak
# (fast mode, measured) and the single-user server.
STUDENT_GB = 1.3
MAX_STUDENTS = 200


def lesson_path(prefix: str) -> Path:
    found = sorted(LESSONS.glob(f"{prefix}_*.ipynb"))
    if len(prefix) != 2 or not prefix.isdigit() or len(found) != 1:
        raise argparse.ArgumentTypeError(f"no lesson {prefix!r}: give two digits, e.g. 00 05")
    return found[0]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=4, help="how many students (4)")
    parser.add_argument("--lessons", nargs="+", type=lesson_path,
                        default=[lesson_path("00"), lesson_path("05")],
                        help="lessons each student runs, in order (00 05)")
    parser.add_argument("--full", action="store_true", help="full quality (default: fast mode)")
    parser.add_argument("--port", type=int, default=8765, help="the hub's port (8765)")
    parser.add_argument("--proxy", default=os.environ.get("UNMASKING_CNNS_HUB_PROXY")
                        or shutil.which("configurable-http-proxy"),
                        help="the configurable-http-proxy command (default: on PATH)")
    parser.add_argument("--workdir", type=Path,
                        help="the hub's state and the students' homes (default: a new "
                             "temporary folder, removed afterwards)")
    parser.add_argument("--interval", type=float, default=0.25,
                        help="seconds between memory samples (0.25)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (1800)")
    parser.add_argument("--out", type=Path, help="write the measurements here as JSON")
    parser.add_argument("--force", action="store_true",
                        help="start even if the machine's free memory looks too small")
    args = parser.parse_args(argv)
    if not 1 <= args.students <= MAX_STUDENTS:
        parser.error(f"--students must be 1 to {MAX_STUDENTS}, not {args.students}")
    if not 1024 <= args.port <= 65535:
        parser.error(f"--port must be 1024 to 65535, not {args.port}")
    if args.interval <= 0 or args.timeout <= 0:
        parser.error("--interval and --timeout must be positive")
    if not args.proxy or not shutil.which(args.proxy):
        parser.error("configurable-http-proxy not found: `npm install configurable-http-proxy` "
                     "and put its bin folder on PATH, or give --proxy")
    if args.workdir is not None:
        workdir = args.workdir.resolve()
        if workdir == REPO or REPO in workdir.parents:
            parser.error("--workdir must lie outside the checkout (students' homes go there)")
    return args


def check_memory(students: int, force: bool) -> None:
    import psutil

    need = students * STUDENT_GB + 1.0
    free = psutil.virtual_memory().available / GB
    if need > free and not force:
        sys.exit(f"{students} students need about {need:.0f} GB and {free:.1f} GB are free: "
                 "fewer students, or --force")


# ---------------------------------------------------------------- memory, in a thread
class Memory:
    """Samples the RSS of every kernel's process tree and every single-user server."""

    def __init__(self, interval: float):
        import psutil

        self.psutil, self.interval = psutil, interval
        self.kernels: dict[tuple, "psutil.Process"] = {}
        self.peaks: dict[tuple, tuple[int, int]] = {}  # peak (RSS, anonymous) per kernel
        self.servers: dict[int, int] = {}  # server pid -> peak RSS
        self.total_peak = 0
        # The machine's used memory (RAM less free, buffers and caches) before and at most.
        self.used_before = self.used_peak = psutil.virtual_memory().used
        self.lock, self.stopped = threading.Lock(), threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def tree(self, process) -> tuple[int, int]:
        """RSS and anonymous RSS of a process tree. The anonymous part (RSS less file-backed
        pages, the kernel's cheap counters) leaves out the libraries' code, mostly
        TensorFlow's (~0.4 GB of every kernel's RSS, in memory once): it is what each
        further student adds. (psutil's USS reads /proc/PID/smaps, 0.1-0.2 s per kernel:
        polling it would take a core from the class.)"""
        rss = anonymous = 0
        try:
            members = [process, *process.children(recursive=True)]
        except self.psutil.Error:
            return 0, 0
        for member in members:
            try:
                info = member.memory_info()
                rss, anonymous = rss + info.rss, anonymous + info.rss - info.shared
            except self.psutil.Error:
                pass
        return rss, anonymous

    def find_kernel(self, kernel_id: str):
        """The kernel's process: its command line names its connection file."""
        needle = f"kernel-{kernel_id}.json"
        for process in self.psutil.process_iter(["cmdline"]):
            if any(needle in part for part in process.info["cmdline"] or ()):
                return process
        return None

    def watch(self, key: tuple, process) -> None:
        with self.lock:
            self.kernels[key] = process
            self.peaks.setdefault(key, (0, 0))

    def unwatch(self, key: tuple) -> tuple[int, int]:
        self.sample()
        with self.lock:
            self.kernels.pop(key, None)
            return self.peaks.get(key, (0, 0))

    def sample(self) -> None:
        with self.lock:
            watched = list(self.kernels.items())
        total, servers = 0, {}
        for key, process in watched:
            rss, uss = self.tree(process)
            total += rss
            with self.lock:
                old = self.peaks.get(key, (0, 0))
                self.peaks[key] = (max(old[0], rss), max(old[1], uss))
            try:
                server = process.parent()
                if server is not None:
                    servers[server.pid] = server.memory_info().rss
            except self.psutil.Error:
                pass
        with self.lock:
            for pid, rss in servers.items():
                self.servers[pid] = max(self.servers.get(pid, 0), rss)
            self.total_peak = max(self.total_peak, total + sum(servers.values()))
            self.used_peak = max(self.used_peak, self.psutil.virtual_memory().used)

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.sample()


# ---------------------------------------------------------------- the hub's REST API
class Hub:
    def __init__(self, port: int, token: str):
        from tornado.httpclient import AsyncHTTPClient

        AsyncHTTPClient.configure(None, max_clients=1000)
        self.base, self.token = f"http://127.0.0.1:{port}", token
        self.client = AsyncHTTPClient()

    async def call(self, method: str, path: str, body=None, token=None, ok=(200, 201, 202, 204)):
        from tornado.httpclient import HTTPClientError

        headers = {"Authorization": f"token {token or self.token}"}
        data = None if body is None else json.dumps(body)
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = ""
        try:
            response = await self.client.fetch(self.base + path, method=method, body=data,
                                               headers=headers, request_timeout=300,
                                               allow_nonstandard_methods=True)
        except HTTPClientError as error:
            if error.code in ok:
                return None
            text = error.response.body.decode()[:500] if error.response else ""
            raise RuntimeError(f"{method} {path}: {error.code} {text}") from None
        return json.loads(response.body) if response.body else None

    async def wait_until_up(self, hub: subprocess.Popen, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if hub.poll() is not None:
                raise RuntimeError(f"the hub exited with code {hub.returncode}")
            try:
                await self.call("GET", "/hub/api/")
                return
            except Exception:
                await asyncio.sleep(0.5)
        raise RuntimeError("the hub did not answer within {seconds:.0f} s")


# ---------------------------------------------------------------- a kernel over its websocket
def message(msg_type: str, content: dict, session: str, channel: str = "shell") -> dict:
    return {"header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": session,
                       "username": "student", "version": "5.3",
                       "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "content": content, "channel": channel,
            "buffers": []}


async def execute(socket, code: str, session: str, timeout: float) -> dict:
    """Run one cell; its execute_reply's content once the kernel is idle again."""
    request = message("execute_request", {"code": code, "silent": False, "store_history": True,
                                          "user_expressions": {}, "allow_stdin": False,
                                          "stop_on_error": True}, session)
    await socket.write_message(json.dumps(request))
    msg_id, reply, idle = request["header"]["msg_id"], None, False
    deadline = time.monotonic() + timeout
    while reply is None or not idle:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"a cell ran longer than {timeout} s")
        raw = await asyncio.wait_for(socket.read_message(), left)
        if raw is None:
            raise RuntimeError("the kernel's websocket closed")
        if isinstance(raw, bytes):  # a message with binary buffers (widgets): not ours
            continue
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if kind == "execute_reply":
            reply = msg["content"]
        elif kind == "status" and msg["content"].get("execution_state") == "idle":
            idle = True
    return reply


async def run_lesson(hub: Hub, memory: Memory, name: str, token: str, lesson: Path,
                     timeout: float) -> dict:
    import nbformat
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    cells = [cell.source for cell in nbformat.read(lesson, as_version=4).cells
             if cell.cell_type == "code"]
    path = f"{COURSE_FOLDER}/{lesson.name}"
    started = time.perf_counter()
    session = await hub.call("POST", f"/user/{name}/api/sessions", token=token,
                             body={"path": path, "type": "notebook", "name": lesson.name,
                                   "kernel": {"name": "python3"}})
    kernel_id = session["kernel"]["id"]
    key = (name, lesson.name)
    for _ in range(200):
        process = memory.find_kernel(kernel_id)
        if process is not None:
            memory.watch(key, process)
            break
        await asyncio.sleep(0.1)
    url = (hub.base.replace("http", "ws", 1)
           + f"/user/{name}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}")
    error, session_id, socket = None, uuid.uuid4().hex, None
    try:
        # The server answers once the kernel is up: N kernels starting at once on a busy
        # machine take minutes, far beyond tornado's default of 20 s.
        socket = await websocket_connect(
            HTTPRequest(url, headers={"Authorization": f"token {token}"},
                        connect_timeout=timeout, request_timeout=timeout),
            max_message_size=512 * 1024 * 1024)
        for index, source in enumerate(cells):
            reply = await execute(socket, source, session_id, timeout)
            if reply.get("status") != "ok":
                error = f"code cell {index}: {reply.get('ename')}: {reply.get('evalue')}"
                break
    except Exception as failure:  # reported with the lesson, the class goes on
        error = f"{type(failure).__name__}: {failure}"
    finally:
        seconds = time.perf_counter() - started
        if socket is not None:
            socket.close()
        peak, anonymous = memory.unwatch(key)
        await hub.call("DELETE", f"/user/{name}/api/sessions/{session['id']}", token=token)
    print(f"  {name} {lesson.name}: {seconds:.0f} s, kernel peak {peak / GB:.2f} GB "
          f"(anonymous {anonymous / GB:.2f} GB)"
          + (f", FAILED: {error}" if error else ""), flush=True)
    return {"student": name, "lesson": lesson.name, "seconds": round(seconds, 1),
            "kernel_peak_gb": round(peak / GB, 3),
            "kernel_anonymous_peak_gb": round(anonymous / GB, 3),
            "cells": len(cells), "error": error}


async def student(hub: Hub, memory: Memory, name: str, lessons: list[Path],
                  timeout: float) -> dict:
    """Log in (a user and their token), start the server, run the lessons in order."""
    await hub.call("POST", f"/hub/api/users/{name}", ok=(201, 409))
    token = (await hub.call("POST", f"/hub/api/users/{name}/tokens",
                            body={"note": "tools/hub_class.py", "expires_in": 24 * 3600}))["token"]
    started = time.perf_counter()
    await hub.call("POST", f"/hub/api/users/{name}/server", token=token)
    while True:
        model = await hub.call("GET", f"/hub/api/users/{name}", token=token)
        server = (model.get("servers") or {}).get("")
        if server and server.get("ready"):
            break
        if not model.get("pending") and not server:
            raise RuntimeError(f"{name}'s server did not start")
        await asyncio.sleep(0.5)
    spawn = time.perf_counter() - started
    print(f"  {name}: server ready after {spawn:.1f} s", flush=True)
    runs = []
    for lesson in lessons:
        runs.append(await run_lesson(hub, memory, name, token, lesson, timeout))
    await hub.call("DELETE", f"/hub/api/users/{name}/server", token=token)
    return {"student": name, "spawn_seconds": round(spawn, 1), "lessons": runs}


async def run_class(args, token: str, hub_process: subprocess.Popen, memory: Memory) -> list:
    hub = Hub(args.port, token)
    await hub.wait_until_up(hub_process)
    names = [f"student{i + 1:02d}" for i in range(args.students)]
    results = await asyncio.gather(*(student(hub, memory, name, args.lessons, args.timeout)
                                     for name in names), return_exceptions=True)
    for name, result in zip(names, results):
        if isinstance(result, BaseException):
            print(f"  {name} FAILED: {type(result).__name__}: {result}", flush=True)
    return [r for r in results if not isinstance(r, BaseException)] or sys.exit(
        "no student got through: see the hub's log")


def summary(results: list, memory: Memory, seconds: float, args) -> dict:
    runs = [run for each in results for run in each["lessons"]]
    per_lesson = {}
    for lesson in dict.fromkeys(run["lesson"] for run in runs):
        mine = [run for run in runs if run["lesson"] == lesson]
        per_lesson[lesson] = {
            "median_seconds": round(statistics.median(r["seconds"] for r in mine), 1),
            "max_seconds": max(r["seconds"] for r in mine),
            "median_kernel_peak_gb": round(statistics.median(r["kernel_peak_gb"] for r in mine), 3),
            "max_kernel_peak_gb": max(r["kernel_peak_gb"] for r in mine),
            "max_kernel_anonymous_peak_gb": max(r["kernel_anonymous_peak_gb"] for r in mine)}
    servers = sorted(memory.servers.values())
    return {"students": args.students, "mode": "full" if args.full else "fast",
            "cpus": os.cpu_count(), "class_seconds": round(seconds, 1),
            "spawn_seconds_max": max(r["spawn_seconds"] for r in results),
            "per_lesson": per_lesson,
            "server_peak_gb_max": round(servers[-1] / GB, 3) if servers else None,
            "all_kernels_and_servers_peak_gb": round(memory.total_peak / GB, 2),
            "machine_used_before_gb": round(memory.used_before / GB, 2),
            "machine_used_peak_gb": round(memory.used_peak / GB, 2),
            "failed": [r for r in runs if r["error"]],
            "students_lost": args.students - len(results), "runs": results}


def main(argv=None) -> int:
    args = parse_args(argv)
    check_memory(args.students, args.force)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="unmasking-cnns-hub-"))
    workdir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)
    env = dict(os.environ, UNMASKING_CNNS_HUB_DIR=str(workdir),
               UNMASKING_CNNS_HUB_URL=f"http://127.0.0.1:{args.port}",
               UNMASKING_CNNS_HUB_TOKEN=token, UNMASKING_CNNS_HUB_PROXY=args.proxy,
               UNMASKING_CNNS_FAST="0" if args.full else "1")
    # The proxy's API port beside the hub's; the hub's own port after that.
    command = [str(Path(sys.executable).with_name("jupyterhub")), "-f", str(CONFIG),
               f"--ConfigurableHTTPProxy.api_url=http://127.0.0.1:{args.port + 1}",
               f"--JupyterHub.hub_port={args.port + 2}"]
    log = open(workdir / "hub.log", "w", encoding="utf-8")
    print(f"starting the hub on port {args.port}; its log: {workdir / 'hub.log'}", flush=True)
    hub = subprocess.Popen(command, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    memory = Memory(args.interval)
    memory.thread.start()
    started = time.perf_counter()
    try:
        results = asyncio.run(run_class(args, token, hub, memory))
        seconds = time.perf_counter() - started
    finally:
        memory.stopped.set()
        hub.send_signal(signal.SIGTERM)  # the hub stops the proxy and the servers it started
        try:
            hub.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(hub.pid, signal.SIGKILL)
        log.close()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report = summary(results, memory, seconds, args)
    print(f"\n{args.students} students, {report['mode']} mode, {report['cpus']} CPUs: "
          f"the class took {report['class_seconds']:.0f} s; servers ready within "
          f"{report['spawn_seconds_max']:.0f} s")
    print("| lesson | median wall (s) | worst wall (s) | median kernel peak RSS (GB) "
          "| worst kernel peak RSS (GB) | worst kernel peak anonymous RSS (GB) |"
          "\n|---|---:|---:|---:|---:|---:|")
    for lesson, row in report["per_lesson"].items():
        print(f"| {lesson} | {row['median_seconds']:.0f} | {row['max_seconds']:.0f} "
              f"| {row['median_kernel_peak_gb']:.2f} | {row['max_kernel_peak_gb']:.2f} "
              f"| {row['max_kernel_anonymous_peak_gb']:.2f} |")
    print(f"single-user server peak RSS: {report['server_peak_gb_max']} GB; all kernels and "
          f"servers together peaked at {report['all_kernels_and_servers_peak_gb']:.1f} GB of RSS "
          f"(shared pages counted in each); the machine's used memory rose from "
          f"{report['machine_used_before_gb']:.1f} to {report['machine_used_peak_gb']:.1f} GB "
          "(other users' processes included)")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    for failure in report["failed"]:
        print(f"FAILED: {failure['student']} {failure['lesson']}: {failure['error']}")
    if report["students_lost"]:
        print(f"FAILED: {report['students_lost']} student(s) did not get through (above)")
    return 1 if report["failed"] or report["students_lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
