#!/usr/bin/env bash
# The hosted-notebook path, run for real in a host-like environment.
#
# A Colab-like host brings its own Python, TensorFlow, Keras, numpy and kernel, and not
# the course. This script builds such an environment outside the checkout: Python 3.12,
# the full `tensorflow` wheel of an older minor version with its keras, numpy as such a
# host ships it, jupyter, ipykernel, pytest and nbval, and none of requirements.txt's
# pins. It copies lessons 00, 03 and 05 to a temporary folder outside the checkout
# (where `import helpers` fails) and runs them with nbval in fast mode: each lesson's
# setup cell (tools/setup_cell.ipy) finds no course and installs it from
# UNMASKING_CNNS_SOURCE (this checkout, unless set to another folder, a wheel or a pip
# URL). It passes when the lessons pass and the host's tensorflow, keras, numpy and
# ipykernel are the same versions after the install as before.
#
#   bash tools/hosted_check.sh            # reuse the environment if it is there
#   bash tools/hosted_check.sh --fresh    # build it anew (downloads ~700 MB once)
#
# Variables (all optional):
#   HOSTED_PYTHON    the host's Python (default: python3.12 on PATH)
#   HOSTED_ENV       where the environment goes (default: $TMPDIR/unmasking-cnns-hostlike)
#   HOSTED_PACKAGES  what the host has (default below: TensorFlow 2.19 as Colab ships it)
#   HOSTED_LESSONS   lesson numbers to run (default: 00 03 05)
#   UNMASKING_CNNS_SOURCE  what the setup cell installs from (default: this checkout)
#
# CPU-heavy for several minutes; it is not part of .ci/run. Lessons run at nice 19.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${HOSTED_PYTHON:-python3.12}
HOST=${HOSTED_ENV:-${TMPDIR:-/tmp}/unmasking-cnns-hostlike}
PACKAGES=${HOSTED_PACKAGES:-tensorflow==2.19.1 keras==3.10.0 numpy==2.0.2 jupyter ipykernel pytest pytest-xdist nbval}
LESSONS=${HOSTED_LESSONS:-00 03 05}
SOURCE=${UNMASKING_CNNS_SOURCE:-$REPO}
HOST_PACKAGES='^(tensorflow|tensorflow-cpu|keras|numpy|ipykernel|jupyter-client|ml-dtypes|h5py)=='

case "$HOST" in "$REPO"|"$REPO"/*) echo "HOSTED_ENV must lie outside the checkout" >&2; exit 2;; esac
step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
started=$(date +%s)

if [[ "${1:-}" == "--fresh" ]]; then rm -rf "$HOST"; fi
if [[ ! -x "$HOST/bin/python" ]]; then
    step "building the host-like environment in $HOST"
    command -v "$PYTHON" >/dev/null || { echo "no $PYTHON: set HOSTED_PYTHON" >&2; exit 2; }
    "$PYTHON" -m venv "$HOST"
    # shellcheck disable=SC2086
    "$HOST/bin/python" -m pip install --quiet $PACKAGES
else
    step "reusing $HOST; removing the course a previous run installed"
    "$HOST/bin/python" -m pip uninstall --quiet --yes unmasking-cnns 2>/dev/null || true
fi
echo "built in $(( $(date +%s) - started )) s"
"$HOST/bin/python" -V

step "the host before the install"
"$HOST/bin/python" -m pip freeze > "$HOST/freeze-before.txt"
grep -iE "$HOST_PACKAGES" "$HOST/freeze-before.txt" | tee "$HOST/host-before.txt"
echo "$(wc -l < "$HOST/freeze-before.txt") distributions installed"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/unmasking-cnns-hosted.XXXXXX")
for lesson in $LESSONS; do cp "$REPO"/notebooks/"$lesson"_*.ipynb "$WORK/"; done
cd "$WORK"
if (unset PYTHONPATH; "$HOST/bin/python" -c "import helpers" 2>/dev/null); then
    echo "helpers is importable before the install: this is not a host without the course" >&2
    exit 1
fi
echo "lessons copied to $WORK: $(ls "$WORK" | tr '\n' ' ')"
echo "import helpers fails there; UNMASKING_CNNS_SOURCE=$SOURCE"

step "the lessons, fast mode, with nbval (the first one's setup cell installs the course)"
lessons_started=$(date +%s)
status=0
env -u PYTHONPATH UNMASKING_CNNS_SOURCE="$SOURCE" UNMASKING_CNNS_FAST=1 \
    UNMASKING_CNNS_CACHE="$WORK/cache" \
    nice -n 19 "$HOST/bin/python" -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider \
    --durations=0 -o console_output_style=classic -rA "$WORK"/*.ipynb || status=$?
echo "lessons took $(( $(date +%s) - lessons_started )) s, pytest exit code $status"

step "the host after the install"
"$HOST/bin/python" -m pip freeze > "$HOST/freeze-after.txt"
grep -iE "$HOST_PACKAGES" "$HOST/freeze-after.txt" | tee "$HOST/host-after.txt"
echo "$(wc -l < "$HOST/freeze-after.txt") distributions installed; the course added or changed:"
diff "$HOST/freeze-before.txt" "$HOST/freeze-after.txt" | sed -n 's/^> /  /p' || true
(unset PYTHONPATH; cd "$WORK" && UNMASKING_CNNS_CACHE="$WORK/cache" "$HOST/bin/python" -c '
import helpers as h, helpers.labels as labels
h.setup()
print("helpers from", h.__file__, "\ndata from", labels.DATA_DIR)')
if ! diff -u "$HOST/host-before.txt" "$HOST/host-after.txt"; then
    echo "FAILED: the install changed the host's own packages (above)" >&2
    status=1
else
    echo "the host's tensorflow, keras, numpy and ipykernel are unchanged"
fi
rm -rf "$WORK"
echo "hosted check: exit code $status, $(( $(date +%s) - started )) s in all"
exit "$status"
