"""Clean-then-forced power-offs of this host's instances, forcible by a
later request.

An operation that will power its instance off registers a PowerOffControl
in the same step as it claims the instance (PowerOffRegistry.claim): from
the moment the instance is busy, a forced request for it finds something
to force, even before the power-off itself has begun (the control stays
forced, and the power-off then destroys at once).
"""

import logging
import threading

from compute_agent import power_policy
from compute_agent import telemetry as telemetry_module
from compute_agent.virt import driver as virt_driver
from compute_agent.virt import power as virt_power

LOG = logging.getLogger(__name__)


class PowerOffRegistry:
    """Owns, under its lock, the control of each power-off that an
    operation has claimed an instance for: instance uuid -> (request id,
    PowerOffControl), from the claim until the operation ends."""

    def __init__(self):
        self._lock = threading.Lock()
        self._controls = {}

    def claim(self, instance_uuid, request_id, claim):
        """Run claim(), which returns the claimed record or raises; once
        the instance is this operation's, register a forcible power-off
        for it in the same step. Returns the record and the power-off's
        control."""
        with self._lock:
            record = claim()
            control = virt_power.PowerOffControl()
            self._controls[instance_uuid] = (request_id, control)
            return record, control

    def release(self, instance_uuid, control):
        """The power-off of control has ended, or will not happen: a
        forced request no longer waits for it."""
        with self._lock:
            entry = self._controls.get(instance_uuid)
            if entry is not None and entry[1] is control:
                del self._controls[instance_uuid]

    def force(self, instance_uuid):
        """Make the instance's power-off destroy now (or at once when it
        begins); False when no operation will power it off."""
        with self._lock:
            entry = self._controls.get(instance_uuid)
        if entry is None:
            return False
        entry[1].force()
        return True

    def progress(self):
        """request id -> progress of each clean power-off that waits."""
        with self._lock:
            entries = list(self._controls.values())
        progress = {}
        for request_id, control in entries:
            state = control.progress()
            if request_id and state is not None:
                progress[request_id] = state
        return progress


class PowerOffs:
    """Powers instances off through the driver, with the timeout the
    request, the image or the configuration gives (power_policy)."""

    def __init__(self, driver, registry, default_shutdown_timeout,
                 shutdown_retry_interval,
                 telemetry=telemetry_module.Telemetry()):
        """:param telemetry: told when each power-off starts and ends."""
        self._driver = driver
        self._registry = registry
        self._default_timeout = default_shutdown_timeout
        self._retry_interval = shutdown_retry_interval
        self._telemetry = telemetry

    def power_off(self, record, control, clean_shutdown, shutdown_timeout,
                  action):
        """Clean-then-forced power-off of the instance of record, forcible
        through control (from PowerOffRegistry.claim), released once it
        ends; returns the last_power_off record."""
        uuid = record['uuid']
        properties = record['image'].get('properties') or {}
        plan = power_policy.plan_power_off(
            clean_shutdown, shutdown_timeout, properties,
            self._default_timeout, uuid)
        paused = plan.attempt_clean and \
            self._driver.get_power_state(uuid) == virt_driver.PAUSED
        self._telemetry.power_off_started(uuid, action, plan.requested,
                                          plan.timeout, plan.source)
        try:
            result = self._driver.power_off(
                uuid, plan.attempt_clean and not paused, plan.timeout,
                self._retry_interval, control=control,
                use_guest_agent=virt_driver.wants_guest_agent(properties))
        finally:
            self._registry.release(uuid, control)
        outcome = dict(result.to_record(), requested=plan.requested)
        if paused:
            outcome['note'] = ('the guest was paused, and a paused guest '
                               'cannot take a clean shutdown')
        LOG.info('Powered off instance %s for %s: %s (requested %s) in '
                 '%.2f s by %s, timeout %d s from %s%s', uuid, action,
                 outcome['result'], plan.requested, result.seconds,
                 result.method, plan.timeout, plan.source,
                 ' (guest was paused)' if paused else '')
        reported = dict(outcome, timeout_source=plan.source)
        if result.off_event_at is not None:
            # The start of the detection lag (metrics.py), on this
            # process's monotonic clock: for the observers only.
            reported['off_event_at'] = result.off_event_at
        self._telemetry.power_off_ended(uuid, action, reported)
        return outcome
