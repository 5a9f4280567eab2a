#!/usr/bin/env bash
# The quick start, from the repository root of a fresh Debian 12 or Ubuntu
# machine:
#
#   sudo tools/quickstart.sh
#
# Installs the system packages (tools/install-deps.sh), installs the agent
# into its own venv, then runs tools/quickstart.py: a narrated walk-through
# of the agent on embedded defaults (a private RabbitMQ, libvirt's
# test:///default driver, SQLite state in a temp dir). It exits non-zero
# when any step does not behave as the walk-through says, so it doubles as
# a smoke test. Re-runs skip everything that is already installed.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# A venv of its own rather than tox's: tox force-reinstalls the package
# into its envs on every run, which would be slow here and would pull the
# package out from under a test run using the same env.
VENV="$REPO_ROOT/.venv-quickstart"
# Records what the venv was installed from; see install_stamp.
STAMP="$VENV/.quickstart-installed"

say() {
    echo "quickstart: $*"
}

# apt needs root; so does nothing else here, but one command is simpler
# for an operator than two.
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        exec sudo "$REPO_ROOT/tools/quickstart.sh" "$@"
    fi
    echo "quickstart: must run as root: sudo tools/quickstart.sh" >&2
    exit 1
fi

cd "$REPO_ROOT"
tools/install-deps.sh

# The package is installed editable, so code changes need no reinstall;
# only a change of its dependencies, entry points or interpreter does.
install_stamp() {
    {
        cat setup.cfg requirements.txt test-requirements.txt
        /usr/bin/python3 --version
    } | sha256sum | cut -d' ' -f1
}

wanted=$(install_stamp)
# -I: from the repo root, a plain import would find the source tree even
# if the venv had lost the package.
if [[ -f $STAMP && $(cat "$STAMP") == "$wanted" &&
    -x $VENV/bin/compute-agent-client ]] &&
    "$VENV/bin/python" -I -c 'import compute_agent' 2>/dev/null; then
    say "$VENV is up to date"
else
    say "installing compute-agent into $VENV (about a minute the first" \
        "time: pip builds libvirt-python)"
    # --clear: a venv left by an older system python cannot be repaired.
    /usr/bin/python3 -m venv --clear "$VENV"
    # Keeps the venv out of git without touching the project's .gitignore.
    echo '*' >"$VENV/.gitignore"
    # test-requirements for the RabbitMQ and RPC helpers under
    # tests/fixtures, which the walk-through reuses.
    "$VENV/bin/pip" install --quiet -r requirements.txt \
        -r test-requirements.txt -e .
    echo "$wanted" >"$STAMP"
fi

exec "$VENV/bin/python" tools/quickstart.py "$@"
