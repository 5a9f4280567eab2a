"""Runs one case of the crash matrix and makes its report row.

For each case: every agent running and ready; the case prepares its
guests; the armed host's agent is restarted armed with the case's
failpoint (arming.py); the case triggers the operation; the agent
reaches the failpoint and dies of SIGKILL, and its systemd's
Restart=on-failure brings it back, unarmed; once the case says the
hosts are done with the instance (wait_settled), both are checked
(checks.py); the case retries or reverts the operation; every guest is
removed, and the hosts are checked again for anything left.
"""

import time
import traceback

from tools.crash_matrix import arming
from tools.crash_matrix import cases
from tools.crash_matrix import checks
from tools.crash_matrix import report
from tools.gate import failure as gate_failure

# Failures a case or a check reports in a line of its own; anything
# else is a bug of the matrix, reported with its traceback.
_EXPECTED = (cases.CaseFailure, arming.ArmingError, gate_failure.GateFailure)


def _headline(error):
    if isinstance(error, _EXPECTED):
        return f'{type(error).__name__}: {error}'
    return traceback.format_exc().strip()


def hosts_for(deployment):
    """(source, destination) of every case: host-a and host-b."""
    names = sorted(deployment.hosts)
    return deployment.hosts[names[0]], deployment.hosts[names[1]]


class CaseRun:
    """One run of one case; ``row()`` after ``run()``."""

    def __init__(self, deployment, case_class):
        self.deployment = deployment
        self.case = case_class(deployment, *hosts_for(deployment))
        self.failures = []
        self.state = 'not reached'
        self.resumed = 'not resumed'
        self.restart_seconds = None
        self.seconds = None

    def run(self):
        started = time.monotonic()
        armed = None
        try:
            self.deployment.recover()
            self.case.prepare()
            armed = arming.arm(self.case.armed_host(), self.case.failpoint)
            self.case.trigger()
            self.restart_seconds = arming.wait_killed_and_restarted(armed)
            if not self.case.wait_settled():
                self.failures.append('the hosts were still busy with the '
                                     'instance when the checks began')
            self._check_and_resume()
        except Exception as error:
            self.failures.append(_headline(error))
        finally:
            self._clean_up(armed)
            self.seconds = time.monotonic() - started
        return self

    def _check_and_resume(self):
        case = self.case
        views = checks.look(self.deployment, [case.instance_uuid])
        self.failures += checks.after_recovery(views, case)
        self.state = checks.state_left(views, case.instance_uuid,
                                       case.request_ids,
                                       name_hosts=case.needs_two_hosts)
        try:
            self.resumed = case.resume()
        except cases.CaseFailure as error:
            self.resumed = f'retry impossible: {error}'
            self.failures.append(f'resume: {error}')

    def _clean_up(self, armed):
        steps = [self.deployment.recover, self.case.cleanup]
        if armed is not None:
            steps.insert(0, lambda: arming.disarm(armed))
        for step in steps:
            try:
                step()
            except Exception as error:
                self.failures.append('cleanup: ' + _headline(error))
        try:
            left = checks.after_cleanup(checks.look(self.deployment, []),
                                        self.case.instance_uuids)
        except Exception as error:
            left = [_headline(error)]
        self.failures += [f'after cleanup: {what}' for what in left]
        try:
            self.case.scrub()
        except Exception as error:
            self.failures.append('scrub: ' + _headline(error))

    def row(self):
        host = self.case.armed_host()
        return report.Row(
            failpoint=self.case.failpoint, operation=self.case.operation,
            host={'name': host.name, 'role': self.case.armed_role},
            outcome=f'{self.state}; {self.resumed}',
            safe=not self.failures, seconds=round(self.seconds, 1),
            restart_seconds=(round(self.restart_seconds, 1)
                             if self.restart_seconds is not None else None),
            failures=self.failures)


def run_case(deployment, case_class):
    return CaseRun(deployment, case_class).run().row()
