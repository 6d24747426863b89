"""What Binder builds from this repository, asked of repo2docker itself, without Docker.

    python -m venv /tmp/r2d && /tmp/r2d/bin/pip install jupyter-repo2docker
    /tmp/r2d/bin/python tools/binder_check.py              # the committed HEAD
    /tmp/r2d/bin/python tools/binder_check.py --ref main --dockerfile /tmp/Dockerfile

Binder (mybinder.org, or a BinderHub of one's own) builds an image with repo2docker.
This script makes a clean checkout of the repository (committed files only, as Binder
clones it) in a temporary folder, runs repo2docker's own build-pack detection there the
way `repo2docker` does before it builds, and prints which build pack it picks, the
Python version it builds and where that version comes from, and the install steps of
the Dockerfile it would build (the whole Dockerfile with --dockerfile). It then checks
what the course relies on, and exits 1 if one fails:

- the Python build pack is picked (runtime.txt, requirements.txt, no environment.yml);
- the Python is runtime.txt's, not repo2docker's default (3.10, where the pins do
  not install) and inside pyproject's requires-python;
- requirements.txt is installed with pip into the kernel's environment, after the
  whole repository is copied in (its `-e .` needs the checkout);
- the pins do not fight the Jupyter server repo2docker installs beside them: pip's
  resolver is asked (a dry run, no install) whether requirements.txt resolves together
  with the server packages of repo2docker's own lock file for that Python
  (--no-resolve skips this; it needs the package index and takes about a minute).

It needs only jupyter-repo2docker in the Python that runs it (not Docker, not the course's
environment) and git. Nothing is built, pulled or pushed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from contextlib import chdir
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The packages of repo2docker's base environment that requirements.txt could fight with:
# the Jupyter server, the notebook front ends and the hub's single-user server.
SERVER_PACKAGES = ("jupyterlab", "notebook", "jupyter_server", "jupyterhub-base",
                   "jupyterhub-singleuser", "ipykernel", "tornado", "nbclassic",
                   "jupyter-resource-usage", "jupyter-offlinenotebook")
# Of those, the ones nothing in requirements.txt depends on: pip upgrades a library the pins
# need (jupyter_server, tornado, ...) but leaves these as they are, so they must accept
# what the pins bring.
LEFT_AS_THEY_ARE = ("notebook", "jupyterhub-base", "nbclassic", "jupyter-resource-usage",
                    "jupyter-offlinenotebook")


def clean_checkout(ref: str, into: Path) -> Path:
    """A fresh clone of `ref` (committed files only), as Binder would clone it."""
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(into)],
                   check=True)
    subprocess.run(["git", "-C", str(into), "checkout", "--quiet", ref], check=True)
    head = subprocess.run(["git", "-C", str(into), "log", "-1", "--format=%h %cs"],
                          check=True, capture_output=True, text=True).stdout.strip()
    print(f"clean checkout of {ref} ({head}) in {into}")
    return into


def pick_buildpack(repo2docker):
    """The build pack repo2docker picks in the current folder, as Repo2Docker.build does."""
    app = repo2docker.app.Repo2Docker()
    for buildpack_class in app.buildpacks:
        buildpack = buildpack_class(base_image=app.base_image)
        detected = buildpack.detect()
        print(f"  {buildpack_class.__name__:30s} {'DETECTED' if detected else '-'}")
        if detected:
            return app, buildpack
    return app, app.default_buildpack(base_image=app.base_image)


def lock_packages(python_version: str, conda_platform: str) -> dict[str, str]:
    """Name -> version of the server packages in repo2docker's conda lock for this Python."""
    import repo2docker.buildpacks.conda as conda

    lock = Path(conda.__file__).parent / f"environment.py-{python_version}-{conda_platform}.lock"
    found = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = re.search(r"/([A-Za-z0-9_.-]+?)-(\d[^-]*)-[^-/]+\.conda", line)
        if match and match[1] in SERVER_PACKAGES:
            found[match[1]] = match[2]
    return found


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolves_together(requirements: Path, server: dict[str, str],
                      added: list[str]) -> tuple[bool, str, list]:
    """Whether pip resolves requirements.txt with the server packages it leaves in place.

    `pip install -r requirements.txt` in repo2docker's environment installs what
    requirements.txt pins, with the libraries they need, and leaves the rest of the
    server as it is (LEFT_AS_THEY_ARE): those must accept what the pins bring, or their
    front end (or the hub's single-user server) breaks.
    """
    lines = [line for line in requirements.read_text(encoding="utf-8").splitlines()
             if line.strip() != "-e ."] + added
    pinned = {normalise(m[1]) for line in lines
              if (m := re.match(r"\s*([A-Za-z0-9_.-]+)\s*==", line))}
    pip_names = {"jupyterhub-base": "jupyterhub", "jupyterhub-singleuser": None}
    kept = [f"{pip_names.get(name, name)}=={version}" for name, version in server.items()
            if name in LEFT_AS_THEY_ARE and normalise(pip_names.get(name, name)) not in pinned]
    with tempfile.TemporaryDirectory() as scratch:
        plain = Path(scratch) / "requirements.txt"
        plain.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
             "--quiet", "-r", str(plain), *kept],
            capture_output=True, text=True)
    message = [line for line in (result.stdout + result.stderr).splitlines()
               if line.strip() and "is ignored" not in line]
    return result.returncode == 0, "\n".join(message[-12:]), kept


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD", help="the commit or branch to check (HEAD)")
    parser.add_argument("--platform", default="linux/amd64",
                        help="the image's platform (Binder's: linux/amd64; or linux/arm64)")
    parser.add_argument("--dockerfile", type=Path, help="write the whole Dockerfile here")
    parser.add_argument("--no-resolve", action="store_true",
                        help="skip pip's dry-run resolution against repo2docker's server")
    parser.add_argument("--pin", action="append", default=[], metavar="NAME==VERSION",
                        help="try the resolution with this pin added to requirements.txt "
                             "(repeatable): how to test a fix before committing it")
    args = parser.parse_args(argv)
    try:
        import repo2docker.app
    except ImportError:
        parser.error("repo2docker is not installed in this Python: "
                     "pip install jupyter-repo2docker in a separate environment")
    print(f"repo2docker {repo2docker.__version__}")

    failures = []
    with tempfile.TemporaryDirectory() as scratch, \
            chdir(clean_checkout(args.ref, Path(scratch) / "repo")):
        print("build-pack detection, in repo2docker's order:")
        app, buildpack = pick_buildpack(repo2docker)
        name = type(buildpack).__name__
        print(f"picked: {name}")
        if name != "PythonBuildPack":
            failures.append(f"repo2docker picked {name}, not the Python build pack")
        version = buildpack.python_version
        source = getattr(buildpack, "_python_version_source", "?")
        runtime = Path("runtime.txt").read_text(encoding="utf-8").strip()
        print(f"Python {version} (from {source}; runtime.txt reads {runtime!r})")
        if source != "runtime" or f"python-{version}" != runtime:
            failures.append(f"Python {version} comes from {source}, not from runtime.txt")
        buildpack.platform = args.platform  # as Repo2Docker.build sets it
        dockerfile = buildpack.render({"NB_USER": "jovyan", "NB_UID": "1000"})
        if args.dockerfile:
            args.dockerfile.write_text(dockerfile, encoding="utf-8")
            print(f"Dockerfile written to {args.dockerfile}")
        copied = re.search(r"^COPY --chown=\S+ src/ ", dockerfile, re.M)
        copy_all = copied.start() if copied else -1
        steps = [line.strip() for line in dockerfile.splitlines()
                 if re.match(r"\s*(RUN .*pip install|COPY --chown=\S+ src/|FROM )", line)]
        print("the Dockerfile's base, copy and pip steps:")
        for step in steps:
            print(f"  {step}")
        install = 'pip install --no-cache-dir -r "requirements.txt"'
        at = dockerfile.find(install)
        if at < 0:
            failures.append("the Dockerfile does not pip install requirements.txt")
        elif copy_all < 0 or at < copy_all:
            failures.append("requirements.txt is installed before the repository is copied "
                            "in, so its `-e .` cannot work")
        if "${KERNEL_PYTHON_PREFIX}/bin/pip install --no-cache-dir -r" not in dockerfile:
            failures.append("requirements.txt is not installed into the kernel's environment")
        if "pip install --no-cache-dir ." in dockerfile:
            print("note: repo2docker also runs `pip install .` (pyproject.toml has [project] and "
                  "[build-system]): helpers ends up installed as a copy, not editable")
        server = lock_packages(version, buildpack._conda_platform())
        print("repo2docker's server environment for this Python: "
              + ", ".join(f"{k} {v}" for k, v in sorted(server.items())))
        if not args.no_resolve:
            ok, message, kept = resolves_together(Path("requirements.txt"), server, args.pin)
            print(f"pip resolves requirements.txt with the ones it does not pin ({', '.join(kept)}): "
                  + ("yes" if ok else "NO"))
            if not ok:
                print("  " + message.replace("\n", "\n  "))
                failures.append("requirements.txt conflicts with repo2docker's server packages")
    for failure in failures:
        print(f"FAIL: {failure}")
    print("OK: Binder builds the course as the README says" if not failures else
          f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
