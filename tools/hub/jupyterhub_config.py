"""JupyterHub for a class on one machine: every student gets JupyterLab with the lessons.

    jupyterhub -f tools/hub/jupyterhub_config.py

Run it from an environment that has the course (requirements.txt) plus
`jupyterhub` (`pip install ".[hub]"` adds it to an installed course), with
`configurable-http-proxy` on PATH (npm). Students open http://<machine>:8000, log in
with any name and the class password, and land in JupyterLab in a folder of their own
that holds a copy of the lessons (made at their first login, never overwritten).
tools/hub_class.py starts this hub and drives a simulated class through it.

Tested with JupyterHub 6.1 and configurable-http-proxy 5.3. What it chooses and why:

- DummyAuthenticator with one shared password: no accounts to create. For a class on
  the open internet use a real authenticator (OAuth with the school's login,
  NativeAuthenticator, ...): only the two `authenticator_class` lines change.
- SimpleLocalProcessSpawner: each student's server is a process of the hub's own user,
  in a home folder of its own. It needs no system users, so it works as root in a
  container (LocalProcessSpawner would switch to a system user of the student's name,
  which must exist). It does not isolate students from each other and does not enforce
  `mem_limit`: for that use SystemdSpawner (cgroups) or, beyond one machine, Zero to
  JupyterHub on Kubernetes (TEACHING.md has the sizing and a values.yaml).
- Kernels idle for an hour are shut down, so a student who leaves finished lessons open
  does not hold a kernel's memory (about 1 GB each) for the rest of the day.

Environment variables (all optional):
  UNMASKING_CNNS_HUB_DIR       the hub's state: database, cookie secret, student homes
                               (default: /tmp/unmasking-cnns-hub)
  UNMASKING_CNNS_HUB_URL       where the hub listens (default: http://:8000, every interface)
  UNMASKING_CNNS_HUB_PASSWORD  the class password (default: none, any password works)
  UNMASKING_CNNS_HUB_TOKEN     an API token for the `class-driver` service (tools/hub_class.py)
  UNMASKING_CNNS_HUB_PROXY     the configurable-http-proxy command (default: on PATH)
  UNMASKING_CNNS_CACHE         the converted models, shared by every student (default:
                               <hub dir>/cache; build it once with `python -c
                               "import helpers as h; h.load_model()"` before class)
  UNMASKING_CNNS_FAST          passed on to the kernels when set (1: fast mode)
"""

import os
import shutil
import sys
from pathlib import Path

c = get_config()  # noqa: F821 -- defined by JupyterHub when it loads this file

REPO = Path(__file__).resolve().parent.parent.parent
LESSONS = REPO / "notebooks"
HUB_DIR = Path(os.environ.get("UNMASKING_CNNS_HUB_DIR", "/tmp/unmasking-cnns-hub"))
HOMES = HUB_DIR / "homes"
CACHE = os.environ.get("UNMASKING_CNNS_CACHE") or str(HUB_DIR / "cache")
# The folder inside a student's home that holds their copy of the lessons.
COURSE_FOLDER = "unmasking-cnns"
# Per student, measured (tools/hub_class.py): a lesson's kernel peaks at 1.0-1.2 GB in fast
# mode, the single-user server holds ~0.1 GB. Shown by JupyterLab; enforced only by
# spawners with cgroups (SystemdSpawner, KubeSpawner).
MEM_LIMIT = "2G"
KERNEL_IDLE_SECONDS = 3600

HUB_DIR.mkdir(parents=True, exist_ok=True)
HOMES.mkdir(parents=True, exist_ok=True)

# The hub.
c.JupyterHub.bind_url = os.environ.get("UNMASKING_CNNS_HUB_URL", "http://:8000")
c.JupyterHub.db_url = f"sqlite:///{HUB_DIR / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(HUB_DIR / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(HUB_DIR / "jupyterhub-proxy.pid")
c.ConfigurableHTTPProxy.command = [os.environ.get("UNMASKING_CNNS_HUB_PROXY",
                                                  "configurable-http-proxy")]
c.JupyterHub.cleanup_servers = True

# Who may log in: anyone with the class password; `teacher` is an admin.
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = os.environ.get("UNMASKING_CNNS_HUB_PASSWORD", "")
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {"teacher"}

# Each student's server: JupyterLab, in a home of their own, as the hub's user.
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = str(HOMES / "{username}")
c.Spawner.cmd = [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
c.Spawner.default_url = f"/lab/tree/{COURSE_FOLDER}/00_getting_started.ipynb"
c.Spawner.notebook_dir = "~"
c.Spawner.args = [f"--MappingKernelManager.cull_idle_timeout={KERNEL_IDLE_SECONDS}",
                  "--MappingKernelManager.cull_interval=300"]
if os.geteuid() == 0:
    # Containers run as root; the hub's user runs the servers (see the docstring).
    c.Spawner.args.append("--allow-root")
c.Spawner.mem_limit = MEM_LIMIT
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60
c.Spawner.environment = {"UNMASKING_CNNS_CACHE": CACHE}
if "UNMASKING_CNNS_FAST" in os.environ:
    c.Spawner.environment["UNMASKING_CNNS_FAST"] = os.environ["UNMASKING_CNNS_FAST"]


def copy_lessons(spawner):
    """Before a student's server starts: their own copy of the lessons, made once."""
    home = Path(spawner.home_dir)
    target = home / COURSE_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    for lesson in sorted(LESSONS.glob("[0-9][0-9]_*.ipynb")):
        if not (target / lesson.name).exists():
            shutil.copy2(lesson, target / lesson.name)


c.Spawner.pre_spawn_hook = copy_lessons

# The service tools/hub_class.py logs in as: it creates students and gets their tokens.
token = os.environ.get("UNMASKING_CNNS_HUB_TOKEN")
if token:
    c.JupyterHub.services = [{"name": "class-driver", "api_token": token}]
    c.JupyterHub.load_roles = [{
        "name": "class-driver",
        "scopes": ["admin:users", "admin:servers", "tokens", "list:users", "read:users"],
        "services": ["class-driver"],
    }]
