"""Work that outlives the request that started it.

A live migration or a cold migration is accepted by one RPC request,
which returns its migration record at once, and runs on a thread of its
own. Such work is registered with the in-flight tracker from the moment
it is accepted until it ends, so the SIGTERM drain waits for it exactly
as for a request. A host that receives an incoming live migration holds
the drain the same way, from pre_live_migration until the source says
how it ended.

Work waits for a slot (e.g. one live migration at a time) before it
starts. Work that has not started when the drain begins never starts: it
is cancelled, and the instance is left as it was.
"""

import logging
import threading

LOG = logging.getLogger(__name__)

TOPIC = 'background'
_SLOT_POLL = 0.1


class Cancelled(Exception):
    """The work was cancelled before it started; args[0] says why."""


class BackgroundWork:
    """Work that outlives the request that queued it (live migrations,
    cold migrations' steps), and the drain holds of incoming migrations.

    Owns the per-kind concurrency slots, guarded by ``_slots_lock``; the
    draining flag is an Event of its own. Everything it runs is reported
    to the tracker, so the drain waits for it.
    """

    def __init__(self):
        self._tracker = None
        self._draining = threading.Event()
        self._slots = {}
        self._slots_lock = threading.Lock()

    def attach(self, tracker):
        """Report to tracker; called once the service exists."""
        self._tracker = tracker

    def begin_drain(self):
        self._draining.set()

    @property
    def draining(self):
        return self._draining.is_set()

    def _slot(self, kind, limit):
        with self._slots_lock:
            if kind not in self._slots:
                self._slots[kind] = threading.BoundedSemaphore(limit)
            return self._slots[kind]

    def submit(self, kind, limit, instance_uuid, request_id, run, cancel,
               cancel_reason=lambda: None):
        """Run run() on a thread once one of kind's limit slots is free.

        :param cancel: called with the reason instead of run() when the
            drain begins, or cancel_reason() returns a reason, first.
        """
        token = self._track(kind, instance_uuid, request_id)
        thread = threading.Thread(
            target=self._run, name=f'{kind}-{instance_uuid}', daemon=True,
            args=(token, self._slot(kind, limit), run, cancel,
                  cancel_reason))
        thread.start()

    def _run(self, token, slot, run, cancel, cancel_reason):
        try:
            try:
                self._wait_for_slot(slot, cancel_reason)
            except Cancelled as reason:
                cancel(str(reason))
                return
            try:
                run()
            finally:
                slot.release()
        except Exception:
            LOG.exception('Background work failed unexpectedly')
        finally:
            self._untrack(token)

    def _wait_for_slot(self, slot, cancel_reason):
        while True:
            if self.draining:
                raise Cancelled('the agent began shutting down before it '
                                'started')
            reason = cancel_reason()
            if reason is not None:
                raise Cancelled(reason)
            if slot.acquire(timeout=_SLOT_POLL):
                if self.draining:
                    slot.release()
                    continue
                return

    def hold(self, kind, instance_uuid, request_id, expires_after):
        """Keep the drain waiting until release() or expires_after
        seconds, whichever is first."""
        return Hold(self, self._track(kind, instance_uuid, request_id),
                    expires_after)

    def _track(self, kind, instance_uuid, request_id):
        if self._tracker is None:
            return None
        return self._tracker.start(TOPIC, kind, instance_uuid, request_id)

    def _untrack(self, token):
        if token is not None:
            self._tracker.end(token)


class Hold:
    """One incoming migration's hold on the drain, released once: by
    its end, or when it expires. ``_lock`` makes the release happen once.
    """

    def __init__(self, work, token, expires_after):
        self._work = work
        self._token = token
        self._lock = threading.Lock()
        self._timer = threading.Timer(expires_after, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self):
        LOG.warning('Gave up waiting for the end of an incoming migration; '
                    'no longer holding the drain for it')
        self.release()

    def release(self):
        self._timer.cancel()
        with self._lock:
            token, self._token = self._token, None
        self._work._untrack(token)
