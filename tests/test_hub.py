"""The class's JupyterHub configuration and tools/hub_class.py, without a running hub.

tools/hub/jupyterhub_config.py is loaded as JupyterHub loads it (traitlets' config
loader) and its key settings are checked; where `jupyterhub` is installed (the `hub`
extra) JupyterHub's own classes read it too, and those tests skip elsewhere.
tools/hub_class.py's argument checks and its kernel-protocol loop are tested with
stand-ins. The measured class itself (a real hub, N students) is run by hand:
`python tools/hub_class.py --students 8` (TEACHING.md has the numbers).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("traitlets")
from traitlets.config.loader import PyFileConfigLoader  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tools import hub_class  # noqa: E402

CONFIG = REPO / "tools" / "hub" / "jupyterhub_config.py"


def load_config(monkeypatch, tmp_path, **env):
    for name in ("UNMASKING_CNNS_HUB_TOKEN", "UNMASKING_CNNS_FAST", "UNMASKING_CNNS_CACHE",
                 "UNMASKING_CNNS_HUB_URL", "UNMASKING_CNNS_HUB_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UNMASKING_CNNS_HUB_DIR", str(tmp_path / "hub"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return PyFileConfigLoader(CONFIG.name, path=str(CONFIG.parent)).load_config()


def test_the_hub_logs_students_in_with_a_password_and_spawns_without_system_users(
        monkeypatch, tmp_path):
    config = load_config(monkeypatch, tmp_path)
    assert config.JupyterHub.authenticator_class == "dummy"
    assert config.Authenticator.allow_all is True and "teacher" in config.Authenticator.admin_users
    # SimpleLocalProcessSpawner: servers run as the hub's user, each in its own home.
    assert config.JupyterHub.spawner_class == "simple"
    assert config.SimpleLocalProcessSpawner.home_dir_template == \
        str(tmp_path / "hub" / "homes" / "{username}")
    assert Path(config.Spawner.cmd[0]).name == "jupyterhub-singleuser"
    assert config.JupyterHub.db_url == f"sqlite:///{tmp_path / 'hub' / 'jupyterhub.sqlite'}"
    assert config.JupyterHub.bind_url == "http://:8000"
    assert ("--allow-root" in config.Spawner.args) == (os.geteuid() == 0)
    assert any(arg.startswith("--MappingKernelManager.cull_idle_timeout=")
               for arg in config.Spawner.args)
    # Students start in their copy of lesson 00.
    lesson = config.Spawner.default_url.removeprefix("/lab/tree/unmasking-cnns/")
    assert (REPO / "notebooks" / lesson).is_file()


def test_the_memory_limit_covers_a_student_as_measured(monkeypatch, tmp_path):
    config = load_config(monkeypatch, tmp_path)
    limit = config.Spawner.mem_limit
    assert limit.endswith("G") and float(limit[:-1]) >= hub_class.STUDENT_GB


def test_kernels_get_the_shared_cache_and_fast_mode_only_when_set(monkeypatch, tmp_path):
    config = load_config(monkeypatch, tmp_path)
    assert config.Spawner.environment == {"UNMASKING_CNNS_CACHE": str(tmp_path / "hub" / "cache")}
    config = load_config(monkeypatch, tmp_path, UNMASKING_CNNS_FAST="1",
                         UNMASKING_CNNS_CACHE="/srv/cache")
    assert config.Spawner.environment == {"UNMASKING_CNNS_CACHE": "/srv/cache",
                                          "UNMASKING_CNNS_FAST": "1"}


def test_the_driver_service_exists_only_with_a_token(monkeypatch, tmp_path):
    config = load_config(monkeypatch, tmp_path)
    assert "services" not in config.JupyterHub and "load_roles" not in config.JupyterHub
    config = load_config(monkeypatch, tmp_path, UNMASKING_CNNS_HUB_TOKEN="secret")
    (service,) = config.JupyterHub.services
    assert service == {"name": "class-driver", "api_token": "secret"}
    (role,) = config.JupyterHub.load_roles
    assert role["services"] == ["class-driver"]
    assert {"admin:users", "admin:servers", "tokens"} <= set(role["scopes"])


def test_each_student_gets_a_copy_of_the_lessons_once(monkeypatch, tmp_path):
    config = load_config(monkeypatch, tmp_path)
    home = tmp_path / "hub" / "homes" / "ada"
    spawner = type("Spawner", (), {"home_dir": str(home)})()
    config.Spawner.pre_spawn_hook(spawner)
    copied = home / "unmasking-cnns"
    lessons = sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(p.name for p in copied.iterdir()) == lessons
    (copied / lessons[0]).write_text("my work", encoding="utf-8")
    config.Spawner.pre_spawn_hook(spawner)
    assert (copied / lessons[0]).read_text(encoding="utf-8") == "my work"


def test_jupyterhub_reads_the_configuration(monkeypatch, tmp_path):
    pytest.importorskip("jupyterhub")
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import DummyAuthenticator
    from jupyterhub.spawner import SimpleLocalProcessSpawner

    config = load_config(monkeypatch, tmp_path, UNMASKING_CNNS_HUB_PASSWORD="class")
    app = JupyterHub(config=config)
    assert app.authenticator_class is DummyAuthenticator
    assert app.spawner_class is SimpleLocalProcessSpawner
    authenticator = DummyAuthenticator(config=config)
    assert authenticator.password == "class" and authenticator.allow_all
    assert app.bind_url == "http://:8000"
    assert SimpleLocalProcessSpawner(config=config).mem_limit == 2 * 1024 ** 3


@pytest.fixture
def proxy():
    return sys.executable  # any existing command passes the check


def test_the_class_driver_checks_its_arguments(proxy, tmp_path):
    args = hub_class.parse_args(["--students", "3", "--proxy", proxy,
                                 "--workdir", str(tmp_path)])
    assert args.students == 3 and [p.name[:2] for p in args.lessons] == ["00", "05"]
    args = hub_class.parse_args(["--lessons", "05", "03", "--proxy", proxy])
    assert [p.name[:2] for p in args.lessons] == ["05", "03"]
    for wrong in (["--students", "0"], ["--students", "1000"], ["--port", "80"],
                  ["--lessons", "99"], ["--lessons", "5"], ["--interval", "0"],
                  ["--workdir", str(REPO / "build")]):
        with pytest.raises(SystemExit):
            hub_class.parse_args([*wrong, "--proxy", proxy])
    with pytest.raises(SystemExit):
        hub_class.parse_args(["--proxy", str(tmp_path / "no-such-proxy")])


class Socket:
    """A kernel's websocket: answers one execute_request with what a kernel sends."""

    def __init__(self, status="ok"):
        self.status, self.incoming = status, []

    async def write_message(self, text):
        parent = {"msg_id": json.loads(text)["header"]["msg_id"]}
        other = {"msg_id": "another-cell"}

        def msg(kind, content, parent_header):
            return json.dumps({"header": {"msg_type": kind}, "parent_header": parent_header,
                               "content": content, "channel": "iopub"})
        self.incoming = [msg("status", {"execution_state": "busy"}, parent),
                         b"\x00binary widget buffers",
                         msg("status", {"execution_state": "idle"}, other),
                         msg("execute_reply", {"status": self.status, "ename": "E",
                                               "evalue": "v"}, parent),
                         msg("stream", {"text": "late output"}, parent),
                         msg("status", {"execution_state": "idle"}, parent)]

    async def read_message(self):
        return self.incoming.pop(0)


def test_a_cell_is_done_when_its_reply_came_and_the_kernel_is_idle():
    socket = Socket()
    reply = asyncio.run(hub_class.execute(socket, "1 + 1", "session", timeout=5))
    assert reply["status"] == "ok" and socket.incoming == []
    reply = asyncio.run(hub_class.execute(Socket("error"), "1 / 0", "session", timeout=5))
    assert reply["status"] == "error"
