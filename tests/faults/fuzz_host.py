"""One agent's host inside the test process, for the bad-input suite.

A real ComputeManager with its SQLite file and the real LibvirtDriver on
a private libvirt test host (``test:///<file>``: a separate, empty host
per open), asking its peers over a real broker. Requests go through
oslo.messaging's RPCDispatcher built by compute_agent.rpc.create_server,
as the agent's servers build it, so the dispatcher's rules (which methods
are reachable, versions) are the agent's own.

``snapshot()`` captures everything a request could change: every row of
every table, every libvirt domain (name, state, XML) and the files under
state_path.
"""

import dataclasses
import os
import sqlite3
import uuid

import fixtures
from oslo_config import cfg
import oslo_messaging
from oslo_messaging import conffixture
from oslo_messaging.rpc import dispatcher as rpc_dispatcher

from compute_agent import db
from compute_agent import exception
from compute_agent import image_store
from compute_agent import manager
from compute_agent import rpc
from compute_agent import rpcapi
from compute_agent import tracker
from compute_agent.virt.libvirt import driver as libvirt_driver
from tests.faults import fuzz_requests

CONTRACT_ERRORS = frozenset(cls.__name__ for cls in exception.EXPECTED)
_DATABASE = 'agent.sqlite'


class BrokerTransport(fixtures.Fixture):
    """An RPC transport to a broker, on the agent's exchange."""

    def __init__(self, transport_url):
        super().__init__()
        self.transport_url = transport_url

    def _setUp(self):
        rpc.set_defaults()
        conf = cfg.ConfigOpts()
        self.useFixture(conffixture.ConfFixture(conf))
        self.transport = oslo_messaging.get_rpc_transport(
            conf, url=self.transport_url)
        self.addCleanup(self.transport.cleanup)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How the agent answered one request, as its RPC server would."""

    exc_type: str = None    # None: it succeeded
    message: str = ''
    declared: bool = False  # raised as an expected (declared) exception
    result: object = None

    @property
    def is_contract_error(self):
        return self.exc_type in CONTRACT_ERRORS and self.declared

    def describe(self):
        if self.exc_type is None:
            return f'succeeded, returning {short(self.result)}'
        how = 'declared' if self.declared else \
            'undeclared: the server logs it as a traceback'
        return f'{self.exc_type} ({how}): {short(self.message)}'


def short(value, limit=300):
    """repr(value), cut to about limit characters."""
    text = repr(value)
    return text if len(text) <= limit else \
        f'{text[:limit]}... ({len(text)} characters)'


class _Incoming:
    """The parts of an incoming message the dispatcher reads."""

    client_timeout = None

    def __init__(self, method, args):
        self.ctxt = {'request_id': f'req-{uuid.uuid4()}'}
        self.message = {'method': method, 'args': args,
                        'version': rpcapi.VERSION}


class InProcessHost(fixtures.Fixture):
    """A seeded host: an active, a stopped, a shelved-offloaded, an error
    and a deleted instance, and two migration records (this host the
    source of one, the destination of the other)."""

    def __init__(self, transport, scratch_path, host='fuzz-host'):
        """:param scratch_path: a directory requests may name as a
            destination path; its files are part of the snapshot.
        """
        super().__init__()
        self._transport = transport
        self._scratch_path = scratch_path
        self.host = host

    def _setUp(self):
        base_dir = self.useFixture(fixtures.TempDir()).path
        self.state_path = os.path.join(base_dir, 'state')
        os.mkdir(self.state_path)
        node_file = os.path.join(base_dir, 'node.xml')
        with open(node_file, 'w') as node:
            node.write('<node/>\n')
        self.driver = libvirt_driver.LibvirtDriver(
            f'test://{node_file}', 'qemu', self.state_path)
        self._db_path = os.path.join(self.state_path, _DATABASE)
        database = db.Database(self._db_path)
        self.tracker = tracker.InFlightTracker()
        self.manager = manager.ComputeManager(
            host=self.host, driver=self.driver, database=database,
            image_store=image_store.ImageStore(
                os.path.join(self.state_path, 'images'), database),
            default_shutdown_timeout=1, shutdown_retry_interval=1,
            peers=rpcapi.ComputeAPI(self._transport, retry=0),
            settings=manager.MigrationSettings(
                instance_event_timeout=0))
        endpoints = self.manager.init_host(self.tracker,
                                           self._service_status)
        # As compute_agent.service.Service.start builds its servers; the
        # server is never started: only its dispatcher is used.
        self.dispatcher = rpc.create_server(
            self._transport, rpc.TOPIC, self.host, endpoints,
            self.tracker).dispatcher
        self.view = self._seed()

    @staticmethod
    def _service_status():
        return {'state': 'running', 'in_flight': [],
                'graceful_shutdown_timeout': 60}

    def call(self, method, args):
        """Dispatch one request; its Outcome."""
        try:
            result = self.dispatcher.dispatch(_Incoming(method, args))
        except rpc_dispatcher.ExpectedException as expected:
            error = expected.exc_info[1]
            return Outcome(type(error).__name__, str(error), declared=True)
        except Exception as error:
            return Outcome(type(error).__name__, str(error))
        return Outcome(result=result)

    # -- seeding ---------------------------------------------------------

    def _must(self, method, **args):
        outcome = self.call(method, args)
        if outcome.exc_type is not None:
            raise AssertionError(f'seeding the host: {method} failed: '
                                 f'{outcome.describe()}')
        return outcome.result

    def _build(self, name):
        spec = {'uuid': _seeded_uuid(name), 'name': name, 'vcpus': 1,
                'memory_mb': 64,
                'image': {'id': 'fuzz-image', 'properties': {}}}
        return self._must('build_and_run_instance', instance=spec)['uuid']

    def _seed(self):
        """The same uuids and names on every host built, so that a
        derandomized run draws the same requests each time."""
        instances = {state: self._build(f'fuzz-{state}') for state in
                     ('active', 'stopped', 'shelved_offloaded', 'deleted')}
        self._must('stop_instance', instance_uuid=instances['stopped'],
                   clean_shutdown=False)
        self._must('shelve_offload_instance',
                   instance_uuid=instances['shelved_offloaded'],
                   clean_shutdown=False)
        self._must('terminate_instance', instance_uuid=instances['deleted'],
                   clean_shutdown=False)
        # A build whose external event never comes ends in error.
        error_build = {'uuid': _seeded_uuid('fuzz-error'),
                       'name': 'fuzz-error',
                       'vcpus': 1, 'memory_mb': 64,
                       'image': {'id': 'fuzz-image', 'properties': {}},
                       'wait_for_events': [{'name': 'network-vif-plugged'}]}
        outcome = self.call('build_and_run_instance',
                            {'instance': error_build})
        if outcome.exc_type != 'HypervisorError':
            raise AssertionError(f'seeding an instance in error: '
                                 f'{outcome.describe()}')
        instances['error'] = error_build['uuid']
        peer = 'fuzz-peer-no-agent-listens-as'
        database = db.Database(self._db_path)
        source = database.put_migration(
            id=_seeded_uuid('outgoing migration'), kind='migration',
            instance_uuid=instances['stopped'], source_host=self.host,
            dest_host=peer, status='reverted', request_id='req-seed',
            details={})
        dest = database.put_migration(
            id=_seeded_uuid('incoming migration'), kind='live-migration',
            instance_uuid=_seeded_uuid('gone'), source_host=peer,
            dest_host=self.host, status='failed', request_id='req-seed',
            details={})
        return fuzz_requests.HostView(
            host=self.host, peer=peer, instances=instances,
            source_migration=source['id'], dest_migration=dest['id'],
            scratch_path=self._scratch_path)

    # -- what a request may have changed ------------------------------------

    def snapshot(self):
        """{what: state} of every row, domain and file a request could
        change."""
        state = self._rows()
        state.update(self._domains())
        state.update(self._files())
        return state

    def _rows(self):
        connection = sqlite3.connect(f'file:{self._db_path}?mode=ro',
                                     uri=True)
        try:
            tables = [row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {f'row {table} {row[0]}': row for table in tables
                    for row in connection.execute(f'SELECT * FROM "{table}"')}
        finally:
            connection.close()

    def _domains(self):
        return {f'domain {domain.UUIDString()}': (
            domain.name(), domain.state()[0], domain.isPersistent(),
            domain.XMLDesc(0))
            for domain in self.driver.connection.listAllDomains()}

    def _files(self):
        found = {}
        for top in (self.state_path, self._scratch_path):
            for root, _, names in os.walk(top):
                for name in names:
                    if not name.startswith(_DATABASE):
                        path = os.path.join(root, name)
                        found[f'file {path}'] = os.path.getsize(path)
        return found


def _seeded_uuid(name):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f'compute-agent-fuzz:{name}'))


def differences(before, after):
    """What changed between two snapshots, as lines of text."""
    return [f'{what}: {short(before.get(what), 200)} -> '
            f'{short(after.get(what), 200)}'
            for what in sorted(set(before) | set(after))
            if before.get(what) != after.get(what)]
