"""Secrets and files, seen from outside a real agent process.

- The files under state_path are the agent's alone: directories 0711 at
  most (QEMU, run by libvirt as another user, must still reach a guest's
  disk by its path), files 0600.
- The broker password in transport_url appears in no log line, even at
  debug, and in no get_service_status answer.
- The agent talks to a RabbitMQ that listens only on TLS and requires a
  client certificate, as a user other than guest.
"""

import json
import os
import socket
import stat
import urllib.parse
import uuid

import fixtures
from oslo_config import cfg
import oslo_messaging
from oslo_messaging import conffixture
import testtools

from tests.fixtures import agent as agent_fixture
from tests.fixtures import rabbitmq
from tests.fixtures import rpc
from tests.fixtures import tls

EXIT_TIMEOUT = 30
CALL_TIMEOUT = 30
# Group and others may neither read nor write anything under state_path.
SHARED_BITS = stat.S_IRWXG | stat.S_IRWXO
TRAVERSE_ONLY = stat.S_IXGRP | stat.S_IXOTH
# oslo.log keeps these libraries at INFO or WARN even with debug = true;
# an operator chasing a bus problem turns them up.
ALL_BUS_LIBRARIES_AT_DEBUG = ','.join(
    f'{logger}=DEBUG' for logger in ('amqp', 'kombu', 'oslo.messaging',
                                     'oslo_messaging'))
AMQP_HEADER = b'AMQP\x00\x00\x09\x01'
AMQP_METHOD_FRAME = b'\x01'


def new_instance():
    instance_uuid = str(uuid.uuid4())
    return {'uuid': instance_uuid, 'name': f'secret-{instance_uuid[:8]}',
            'vcpus': 1, 'memory_mb': 128,
            'image': {'id': str(uuid.uuid4()), 'properties': {}}}


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def new_password():
    # Characters a URL must quote, so that the quoted form is checked too.
    return f'Pw!{uuid.uuid4().hex}#'


class StateFilesTest(testtools.TestCase):
    def start_agent(self, state_path):
        broker = rabbitmq.shared_broker()
        agent = self.useFixture(agent_fixture.AgentProcess(
            broker.transport_url,
            extra_config={'DEFAULT': {'state_path': state_path}}))
        agent.wait_ready()
        client = self.useFixture(rpc.AgentRPCClient(broker.transport_url,
                                                    agent.host))
        return agent, client

    def assertPrivate(self, state_path):
        """Every file 0600 (or tighter), every directory at most
        traversable by others, state_path included."""
        self.assertEqual(0, mode_of(state_path) & SHARED_BITS
                         & ~TRAVERSE_ONLY, oct(mode_of(state_path)))
        seen = []
        for directory, subdirs, files in os.walk(state_path):
            for name in subdirs:
                path = os.path.join(directory, name)
                self.assertEqual(0, mode_of(path) & SHARED_BITS
                                 & ~TRAVERSE_ONLY, f'{path} {mode_of(path):o}')
            for name in files:
                path = os.path.join(directory, name)
                self.assertEqual(0, mode_of(path) & SHARED_BITS,
                                 f'{path} {mode_of(path):o}')
                seen.append(name)
        return seen

    def test_new_state_path_is_created_private(self):
        state_path = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'new', 'state')
        agent, client = self.start_agent(state_path)
        client.call('build_and_run_instance', instance=new_instance())

        self.assertEqual(0o711, mode_of(state_path))
        self.assertIn('agent.sqlite', self.assertPrivate(state_path))
        agent.sigterm()
        self.assertEqual(0, agent.wait_exit(EXIT_TIMEOUT))
        self.assertNotIn('readable or writable by', agent.log_text())

    def test_open_state_path_and_database_are_tightened_once(self):
        # As an earlier version (or a packaging default) left them.
        state_path = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'state')
        os.mkdir(state_path)
        os.chmod(state_path, 0o755)
        database = os.path.join(state_path, 'agent.sqlite')
        with open(database, 'w'):
            pass    # an empty file is an empty SQLite database
        os.chmod(database, 0o644)

        agent, client = self.start_agent(state_path)
        instance = new_instance()
        client.call('build_and_run_instance', instance=instance)
        client.call('stop_instance', instance_uuid=instance['uuid'])
        self.assertEqual(0o711, mode_of(state_path))
        self.assertEqual(0o600, mode_of(database))
        self.assertPrivate(state_path)
        agent.sigterm()
        self.assertEqual(0, agent.wait_exit(EXIT_TIMEOUT))
        warnings = [line for line in agent.log_text().splitlines()
                    if 'readable or writable by' in line]
        self.assertEqual(2, len(warnings), warnings)
        self.assertTrue(all('WARNING' in line for line in warnings))

        agent.restart()
        agent.wait_ready()
        agent.sigterm()
        self.assertEqual(0, agent.wait_exit(EXIT_TIMEOUT))
        self.assertEqual(2, agent.log_text().count('readable or writable by'))


class PasswordTest(testtools.TestCase):
    def test_password_appears_in_no_log_line_and_no_status(self):
        broker = rabbitmq.shared_broker()
        user, password = f'agent-{uuid.uuid4().hex[:8]}', new_password()
        broker.add_user(user, password)
        url = broker.url_for(user, password)
        agent = self.useFixture(agent_fixture.AgentProcess(
            url, debug=True, extra_config={'DEFAULT': {
                'default_log_levels': ALL_BUS_LIBRARIES_AT_DEBUG}}))
        agent.wait_ready()
        client = self.useFixture(rpc.AgentRPCClient(url, agent.host))

        answers = []
        instance = new_instance()
        answers.append(client.call('build_and_run_instance',
                                   instance=instance))
        answers.append(client.call('stop_instance',
                                   instance_uuid=instance['uuid']))
        for topic in (rpc.TOPIC, rpc.ALT_TOPIC):
            answers.append(client.call('get_service_status', topic=topic))
        # A method outside the API comes back as a clear error, with no
        # traceback in the agent's log.
        error = self.assertRaises(oslo_messaging.RemoteError, client.call,
                                  'drain_started')
        self.assertEqual('NoSuchMethod', error.exc_type)
        self.assertIn('drain_started', error.value)
        agent.sigterm()
        self.assertEqual(0, agent.wait_exit(EXIT_TIMEOUT))

        log = agent.log_text()
        # The agent had the password, and logged at debug level.
        with open(agent.config_file) as config:
            self.assertIn(urllib.parse.quote(password, safe=''),
                          config.read())
        self.assertIn(' DEBUG oslo_messaging', log)
        self.assertIn(' DEBUG amqp', log)
        self.assertNotIn('Traceback', log)
        everything = log + agent.output_text() + json.dumps(answers)
        for form in (password, urllib.parse.quote(password, safe='')):
            self.assertNotIn(form, everything)


class TLSBrokerTest(testtools.TestCase):
    """A broker with no plain listener, requiring client certificates."""

    def setUp(self):
        super().setUp()
        self.pki = tls.make_pki(self.useFixture(fixtures.TempDir()).path)
        self.broker = self.useFixture(
            rabbitmq.RabbitMQFixture(tls=self.pki)).broker
        user, password = f'agent-{uuid.uuid4().hex[:8]}', new_password()
        self.broker.add_user(user, password)
        self.url = self.broker.url_for(user, password)
        self.ssl_options = {
            'ssl': 'true', 'ssl_ca_file': self.pki.ca_file,
            'ssl_cert_file': self.pki.client.cert_file,
            'ssl_key_file': self.pki.client.key_file}

    def tls_client(self, host):
        conf = cfg.ConfigOpts()
        self.useFixture(conffixture.ConfFixture(conf))
        for name, value in self.ssl_options.items():
            conf.set_override(name, value, group='oslo_messaging_rabbit')
        transport = oslo_messaging.get_rpc_transport(conf, url=self.url)
        self.addCleanup(transport.cleanup)
        return oslo_messaging.get_rpc_client(
            transport, oslo_messaging.Target(
                exchange=rpc.EXCHANGE, topic=rpc.TOPIC, server=host,
                version=rpc.RPC_API_VERSION), timeout=CALL_TIMEOUT)

    def call(self, client, method, **kwargs):
        return client.call({'request_id': rpc.new_request_id()}, method,
                           **kwargs)

    def test_agent_serves_over_tls_only(self):
        agent = self.useFixture(agent_fixture.AgentProcess(
            self.url,
            extra_config={'oslo_messaging_rabbit': self.ssl_options}))
        agent.wait_ready()
        client = self.tls_client(agent.host)

        instance = new_instance()
        built = self.call(client, 'build_and_run_instance',
                          instance=instance)
        self.assertEqual('active', built['vm_state'])
        stopped = self.call(client, 'stop_instance',
                            instance_uuid=instance['uuid'])
        self.assertEqual('stopped', stopped['vm_state'])
        status = self.call(client, 'get_service_status')
        self.assertEqual((agent.host, 'running'),
                         (status['host'], status['state']))
        agent.sigterm()
        self.assertEqual(0, agent.wait_exit(EXIT_TIMEOUT))

    def test_plain_amqp_is_refused(self):
        with socket.create_connection(('127.0.0.1', self.broker.port),
                                      timeout=CALL_TIMEOUT) as plain:
            plain.sendall(AMQP_HEADER)
            try:
                answer = plain.recv(64)
            except ConnectionResetError:
                answer = b''
        # An AMQP listener answers the header with a Connection.Start
        # method frame; the TLS listener answers with an alert or closes.
        self.assertFalse(answer.startswith(AMQP_METHOD_FRAME), answer)
