#!/usr/bin/env bash
# The project's test command, from the repository root:
#
#   sudo tools/run-tests.sh             every suite CI runs
#   sudo tools/run-tests.sh -e py3      just the named tox environments
#
# Installs the system dependencies and a tox venv first (tools/
# install-deps.sh), then runs tox. Exits non-zero when anything fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Real guests need a private libvirtd in a mount namespace, hence root.
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        exec sudo --preserve-env=CI "$PWD/tools/run-tests.sh" "$@"
    fi
    echo "run-tests: must run as root: sudo tools/run-tests.sh" >&2
    exit 1
fi

tools/install-deps.sh

if (($# == 0)); then
    set -- -e pep8,genconfig-check,py3,functional,realguest
fi
echo "run-tests: .venv/bin/tox $*"
exec .venv/bin/tox "$@"
