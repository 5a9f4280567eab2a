#!/usr/bin/env bash
# The project's test command, from the repository root:
#
#   sudo tools/run-tests.sh             every suite CI runs, then the
#                                       gate job (report in $GATE_REPORT,
#                                       default build/gate/report.json,
#                                       and its eventlet run beside it,
#                                       report-eventlet.json)
#                                       and a sample of the crash matrix
#                                       (build/crash-matrix/report.json),
#                                       then a fleet run of 10 agents
#                                       (build/fleet/report.json)
#   sudo tools/run-tests.sh -e py3      just the named tox environments
#
# Installs the system dependencies and a tox venv first (tools/
# install-deps.sh), then runs tox. Exits non-zero when anything fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Real guests need a private libvirtd in a mount namespace, hence root.
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        exec sudo --preserve-env=CI,GATE_REPORT "$PWD/tools/run-tests.sh" "$@"
    fi
    echo "run-tests: must run as root: sudo tools/run-tests.sh" >&2
    exit 1
fi

tools/install-deps.sh

if (($# > 0)); then
    echo "run-tests: .venv/bin/tox $*"
    exec .venv/bin/tox "$@"
fi

# Every suite, then the graceful-shutdown gate job once per scenario. The
# gate runs even when a suite failed, so that one CI run reports both;
# the exit status is non-zero when anything failed.
GATE_REPORT=${GATE_REPORT:-build/gate/report.json}
status=0
# CI shows only the tail of a long run: keep the whole of it in a file,
# and end with what failed, read back from that file.
RUN_LOG=build/run-tests.log
mkdir -p "$(dirname "$RUN_LOG")"
exec > >(tee "$RUN_LOG") 2>&1
# py3-eventlet, functional-eventlet and realguest-eventlet: the unit,
# functional and real-guest suites again in eventlet mode
# (COMPUTE_AGENT_CONCURRENCY=eventlet). cluster: agents on a three-node
# RabbitMQ cluster losing and restarting nodes.
envs=pep8,genconfig-check,systemd-verify,py3,py3-eventlet,functional
envs+=,functional-eventlet,cluster,realguest,realguest-eventlet,faults
echo "run-tests: .venv/bin/tox -e $envs"
.venv/bin/tox -e "$envs" || status=$?
echo "run-tests: .venv/bin/tox -e gate -- --repeat 1 --report $GATE_REPORT"
.venv/bin/tox -e gate -- --repeat 1 --report "$GATE_REPORT" || status=$?
# The gate's eight SIGTERM scenarios again with both agents in eventlet
# mode (about 2 minutes; the reload, host-shutdown and guest-agent
# scenarios run in threading mode only, above).
GATE_EVENTLET_REPORT=${GATE_REPORT%.json}-eventlet.json
eventlet_scenarios=()
for scenario in build-sigterm stop-acpi-sigterm stop-ignoring-acpi-sigterm \
        live-migration-sigterm-source live-migration-sigterm-dest \
        cold-migration-sigterm-source cold-migration-sigterm-dest \
        revert-resize-sigterm; do
    eventlet_scenarios+=(--scenario "$scenario")
done
echo "run-tests: .venv/bin/tox -e gate -- --concurrency eventlet" \
     "${eventlet_scenarios[*]} --report $GATE_EVENTLET_REPORT"
.venv/bin/tox -e gate -- --concurrency eventlet "${eventlet_scenarios[@]}" \
    --report "$GATE_EVENTLET_REPORT" || status=$?
# A sample of the crash matrix, rotating daily through its failpoints
# (about 20 s a single-host case, up to 45 s a two-host one: 3 to 6
# minutes).
CRASH_MATRIX_REPORT=build/crash-matrix/report.json
echo "run-tests: .venv/bin/tox -e crash-matrix -- --sample 10 --report" \
     "$CRASH_MATRIX_REPORT"
.venv/bin/tox -e crash-matrix -- --sample 10 \
    --report "$CRASH_MATRIX_REPORT" || status=$?
# The fleet run at 10 agents on the three-node cluster (about 2 minutes;
# tox -e fleet runs 50 by default): nothing lost, nothing run twice.
FLEET_REPORT=build/fleet/report.json
echo "run-tests: .venv/bin/tox -e fleet -- --agents 10 --json $FLEET_REPORT"
mkdir -p "$(dirname "$FLEET_REPORT")"
.venv/bin/tox -e fleet -- --agents 10 --json "$FLEET_REPORT" || status=$?
# Every tox environment's result, then each failed test, gate run,
# crash-matrix case and fleet figure, so that the tail says what failed.
echo "run-tests: how each tox environment ended:"
grep -E '^  [a-z0-9-]+: (OK|FAIL|SKIP)' "$RUN_LOG" || true
if ((status != 0)); then
    echo "run-tests: FAILED (exit $status); what failed, from $RUN_LOG:"
    grep -nE '\.\.\. FAILED$|^(gate|crash-matrix): \[[0-9]+/[0-9]+\].*(FAILED|NOT SAFE)|^faults: FAILED|^(lost|executed twice) +[1-9]' \
        "$RUN_LOG" || echo "  (no failed test named: see the log)"
    echo "run-tests: the gate's reports: $GATE_REPORT and" \
         "$GATE_EVENTLET_REPORT; the crash matrix's: $CRASH_MATRIX_REPORT;" \
         "the fleet run's: $FLEET_REPORT; the faults suite's subunit" \
         "stream: build/faults/last.subunit"
fi
exit "$status"
