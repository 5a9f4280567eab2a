"""The fleet run's control plane: a steady stream of operations across
the fleet through compute_agent.rpcapi.ComputeAPI, a bounded number at a
time, each request written to the ledger with how its call ended.

It keeps its own view of each instance (host, active or stopped) and
sends only what that view allows; an instance whose state a call left
unknown (a timeout, a broken connection) is set aside, not guessed at.
"""

import random
import threading
import time
import uuid

import fixtures
from oslo_config import cfg
import oslo_messaging
from oslo_messaging import conffixture

from compute_agent import rpc
from compute_agent import rpcapi
from tools.bench.fleet import accounting

# The test driver powers a guest off at once; a clean stop never waits.
SHUTDOWN_TIMEOUT = 10
MIGRATION_FINAL = ('completed', 'failed', 'cancelled', 'error')
MIGRATION_POLL = 0.2
MIGRATION_DEADLINE = 180
INSTANCES_PER_HOST = 2
# Relative weights of what is sent to an instance in each state.
ON_ACTIVE = (('stop clean', 3), ('stop forced', 2), ('reboot soft', 1),
             ('reboot hard', 1), ('delete', 1), ('migrate', 1))
ON_STOPPED = (('start', 4), ('delete', 1), ('migrate', 1))


def new_instance():
    instance_uuid = str(uuid.uuid4())
    return {'uuid': instance_uuid, 'name': f'fleet-{instance_uuid[:8]}',
            'vcpus': 1, 'memory_mb': 64,
            'image': {'id': 'fleet-image', 'properties': {}}}


class ComputeClient(fixtures.Fixture):
    """ComputeAPI on its own transport, set up as the agents are (quorum
    queues, the agents' exchange), with version_pin as its [upgrade_levels]
    compute (None: unpinned)."""

    def __init__(self, transport_url, timeout, version_pin=None):
        super().__init__()
        self.transport_url = transport_url
        self.timeout = timeout
        self.version_pin = version_pin

    def _setUp(self):
        conf = cfg.ConfigOpts()
        self.useFixture(conffixture.ConfFixture(conf))
        conf.set_override('rabbit_quorum_queue', True,
                          group='oslo_messaging_rabbit')
        conf.set_override('control_exchange', rpc.DEFAULT_EXCHANGE)
        # The methods without a timeout argument (start) use this one.
        conf.set_override('rpc_response_timeout', self.timeout)
        transport = oslo_messaging.get_rpc_transport(
            conf, url=self.transport_url)
        self.addCleanup(transport.cleanup)
        self.api = rpcapi.ComputeAPI(transport,
                                     version_pin=self.version_pin)


class ControlPlane:
    """Workers sending operations; owns the instance view and its lock."""

    def __init__(self, api, hosts, ledger, concurrency, timeout, seed=None):
        self._api = api
        self._hosts = list(hosts)
        self._ledger = ledger
        self._concurrency = concurrency
        self._timeout = timeout
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._idle = {}        # uuid -> (host, 'active' | 'stopped')
        self._busy = 0         # instances with a request under way
        self.set_aside = 0     # instances whose state a call left unknown
        self.phase = 'steady'
        self._stop = threading.Event()
        self._workers = []

    # -- running ---------------------------------------------------------

    def start(self):
        for index in range(self._concurrency):
            worker = threading.Thread(target=self._work,
                                      name=f'control-{index}', daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self, timeout):
        """Send nothing new; wait for the calls under way."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0, deadline - time.monotonic()))
        return [worker.name for worker in self._workers
                if worker.is_alive()]

    def _work(self):
        while not self._stop.is_set():
            task = self._next()
            if task is None:
                self._stop.wait(0.05)
                continue
            operation, instance_uuid, host, state = task
            try:
                outcome = self._perform(operation, instance_uuid, host,
                                        state)
            except Exception:
                outcome = None
            with self._lock:
                self._busy -= 1
                if outcome is None:
                    self.set_aside += 1
                elif outcome[1] is not None:
                    self._idle[outcome[0]] = outcome[1]

    def _next(self):
        """(operation, uuid, host, state) to do next, the instance taken
        out of the idle set; None when there is nothing to do."""
        with self._lock:
            total = len(self._idle) + self._busy
            if total < INSTANCES_PER_HOST * len(self._hosts) and (
                    not self._idle or self._random.random() < 0.5):
                self._busy += 1
                return 'boot', None, self._random.choice(self._hosts), None
            if not self._idle:
                return None
            instance_uuid = self._random.choice(list(self._idle))
            host, state = self._idle.pop(instance_uuid)
            self._busy += 1
        choices = ON_ACTIVE if state == 'active' else ON_STOPPED
        operation = self._random.choices(
            [name for name, _ in choices],
            [weight for _, weight in choices])[0]
        if operation == 'migrate' and len(self._hosts) < 2:
            operation = 'delete'
        return operation, instance_uuid, host, state

    # -- one operation ---------------------------------------------------

    def _perform(self, operation, instance_uuid, host, state):
        """Do it; (uuid, (host, state)) as it then stands, (uuid, None)
        once deleted, None when unknown."""
        api, timeout = self._api, self._timeout
        if operation == 'boot':
            instance = new_instance()
            _, record = self._send(
                operation, host, lambda ctxt: api.build_and_run_instance(
                    ctxt, host, instance, timeout=timeout))
            return self._after(instance['uuid'], host, record)
        if operation == 'migrate':
            return self._migrate(instance_uuid, host)
        calls = {
            'stop clean': lambda ctxt: api.stop_instance(
                ctxt, host, instance_uuid, True, SHUTDOWN_TIMEOUT,
                timeout=timeout),
            'stop forced': lambda ctxt: api.stop_instance(
                ctxt, host, instance_uuid, False, timeout=timeout),
            'start': lambda ctxt: api.start_instance(
                ctxt, host, instance_uuid),
            'reboot soft': lambda ctxt: api.reboot_instance(
                ctxt, host, instance_uuid, 'SOFT', timeout=timeout),
            'reboot hard': lambda ctxt: api.reboot_instance(
                ctxt, host, instance_uuid, 'HARD', timeout=timeout),
            'delete': lambda ctxt: api.terminate_instance(
                ctxt, host, instance_uuid, True, SHUTDOWN_TIMEOUT,
                timeout=timeout),
        }
        _, record = self._send(operation, host, calls[operation])
        if operation == 'delete' and isinstance(record, dict):
            return instance_uuid, None
        return self._after(instance_uuid, host, record)

    def _send(self, operation, host, call, evidence=accounting.ACTIONS,
              key=None):
        """Send one request and write it to the ledger; (its ledger entry,
        the result, the RemoteError of an error reply, or None when the
        call got no reply)."""
        ctxt = rpcapi.new_context()
        request = self._ledger.add(accounting.Request(
            ctxt['request_id'], host, operation, self.phase, evidence, key))
        started = time.monotonic()
        try:
            result = call(ctxt)
        except oslo_messaging.RemoteError as error:
            request.outcome = accounting.FAILED
            request.error_type = error.exc_type
            request.error_message = str(error.value)[:300]
            result = error
        except oslo_messaging.MessagingTimeout:
            request.outcome = accounting.TIMED_OUT
            result = None
        except Exception as error:
            request.outcome = accounting.BROKEN
            request.error_type = type(error).__name__
            request.error_message = str(error)[:300]
            result = None
        else:
            request.outcome = accounting.ANSWERED
        request.seconds = time.monotonic() - started
        return request, result

    def _after(self, instance_uuid, host, result):
        """The view of an instance after a call: from the record it
        answered with, else asked again (an error reply), else unknown."""
        if isinstance(result, dict):
            return self._view(instance_uuid, result)
        if isinstance(result, oslo_messaging.RemoteError):
            return self._ask(instance_uuid, host)
        return None

    def _ask(self, instance_uuid, host):
        try:
            record = self._api.get_instance(
                rpcapi.new_context(), host, instance_uuid,
                timeout=self._timeout)
        except oslo_messaging.RemoteError as error:
            if error.exc_type == 'InstanceNotFound':
                return instance_uuid, None
            return None
        except Exception:
            return None
        return self._view(instance_uuid, record)

    @staticmethod
    def _view(instance_uuid, record):
        if record.get('task_state') is None and \
                record.get('vm_state') in ('active', 'stopped'):
            return instance_uuid, (record['host'], record['vm_state'])
        return None

    def _migrate(self, instance_uuid, source):
        """Cold migration to another host: prep_resize to the destination,
        follow it there, confirm_resize on the source. The ledger's
        'migrate' entry times the whole move, up to completed."""
        dest = self._random.choice([h for h in self._hosts if h != source])
        started = time.monotonic()
        request, migration = self._send(
            'migrate', dest, lambda ctxt: self._api.prep_resize(
                ctxt, dest, instance_uuid, None, source,
                clean_shutdown=self._random.random() < 0.5,
                shutdown_timeout=SHUTDOWN_TIMEOUT, timeout=self._timeout),
            evidence=accounting.MIGRATIONS)
        if not isinstance(migration, dict):
            return self._after(instance_uuid, source, migration)
        done = self._follow(dest, migration['id'])
        if done is None:
            return None
        request.seconds = time.monotonic() - started
        if done['status'] != 'completed':
            return self._ask(instance_uuid, source)
        _, confirmed = self._send(
            'confirm', source, lambda ctxt: self._api.confirm_resize(
                ctxt, source, migration['id'], timeout=self._timeout),
            evidence=accounting.CONFIRMED, key=migration['id'])
        if isinstance(confirmed, dict) and confirmed['status'] == 'confirmed':
            return self._ask(instance_uuid, dest)
        return None

    def _follow(self, host, migration_id):
        """The migration once final, or None at the deadline."""
        deadline = time.monotonic() + MIGRATION_DEADLINE
        while time.monotonic() < deadline:
            try:
                migration = self._api.get_migration(
                    rpcapi.new_context(), host, migration_id,
                    timeout=self._timeout)
            except oslo_messaging.MessagingTimeout:
                continue
            if migration['status'] in MIGRATION_FINAL:
                return migration
            time.sleep(MIGRATION_POLL)
        return None
