"""What the bus can reach: the versioned RPC API and nothing else.

The manager has public methods the service calls directly (init_host,
drain_started, ...). Dispatched from the bus, drain_started would make a
healthy agent cancel every piece of background work it queues afterwards,
so these tests go through the dispatcher rpc.create_server really builds.
"""

import ast
import inspect
import logging

import fixtures
import oslo_messaging
from oslo_messaging.rpc import dispatcher as rpc_dispatcher

from compute_agent import exception
from compute_agent import rpc
from compute_agent import rpcapi
from compute_agent import rpcapi_versions
from tests.unit import base
from tests.unit import test_manager

HOST = test_manager.HOST
CALL_TIMEOUT = 30


def methods_rpcapi_sends():
    """Every method name compute_agent/rpcapi.py (and the version
    discovery in rpcapi_versions.py) passes to call() or cast(), read
    from their source: the client side of the wire."""
    names = set()
    for node in (node for module in (rpcapi, rpcapi_versions)
                 for node in ast.walk(ast.parse(inspect.getsource(module)))):
        if (isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ('call', 'cast')
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)):
            names.add(node.args[1].value)
    return names


class FakeIncoming:
    """Just what RPCDispatcher.dispatch reads of an incoming request."""

    client_timeout = None

    def __init__(self, method, args=None, version=rpcapi.VERSION):
        self.message = {'method': method, 'args': args or {},
                        'version': version}
        self.ctxt = {'request_id': 'req-surface'}


class SurfaceTestCase(test_manager.ManagerTestCase):
    def setUp(self):
        super().setUp()
        self.server = base.fake_rpc_server(self, HOST,
                                           self.manager.endpoints)
        self.transport = self.server.transport

    def reachable(self):
        """Names the server's dispatcher would run for a request."""
        policy = self.server.dispatcher.access_policy
        return {name for endpoint in self.manager.endpoints
                for name in dir(endpoint)
                if policy.is_allowed(endpoint, name)}

    def internal_methods(self):
        """Public callables of the manager that rpcapi never sends."""
        sent = methods_rpcapi_sends()
        compute = self.manager.compute
        return sorted(name for name in dir(compute)
                      if not name.startswith('_') and name not in sent
                      and callable(getattr(compute, name)))


class ReachableMethodsTest(SurfaceTestCase):
    def test_rpcapi_parsing_finds_the_api(self):
        # Guards the comparison below against a parser that finds nothing.
        sent = methods_rpcapi_sends()
        self.assertIn('build_and_run_instance', sent)
        self.assertIn('resize_instance', sent)   # sent with **arguments
        self.assertGreater(len(sent), 30)

    def test_reachable_methods_are_what_rpcapi_sends(self):
        self.assertEqual(sorted(methods_rpcapi_sends()),
                         sorted(self.reachable()))

    def test_wake_method_is_reachable(self):
        self.assertIn(rpc.WAKE_METHOD, self.reachable())

    def test_internal_methods_exist(self):
        # Keeps the refusal test below meaningful.
        self.assertIn('init_host', self.internal_methods())
        self.assertIn('drain_started', self.internal_methods())


class DispatchRefusalTest(SurfaceTestCase):
    def dispatch(self, method, args=None):
        return self.server.dispatcher.dispatch(FakeIncoming(method, args))

    def assertRefused(self, method, args=None):
        try:
            self.dispatch(method, args)
        except rpc_dispatcher.ExpectedException as wrapped:
            error = wrapped.exc_info[1]
        except Exception as error_raised:
            self.fail(f'{method}: {error_raised!r} instead of a refusal')
        else:
            self.fail(f'{method} was dispatched')
        self.assertIsInstance(error, rpc_dispatcher.NoSuchMethod)
        self.assertIn(method, str(error))

    def test_drain_started_from_the_bus_is_refused(self):
        # The dispatcher passes the context as the first argument: a bare
        # call lands in drain_started(deadline=<context>).
        self.assertRefused('drain_started')
        self.assertFalse(self.manager.work.draining)

    def test_every_internal_method_is_refused(self):
        for name in self.internal_methods():
            self.assertRefused(name)

    def test_private_and_unknown_names_are_refused(self):
        for name in ('_begin', '_get', 'target', 'no_such_method'):
            self.assertRefused(name)

    def test_a_version_newer_than_the_api_is_refused(self):
        try:
            self.server.dispatcher.dispatch(
                FakeIncoming('list_instances', version='9.0'))
        except rpc_dispatcher.ExpectedException as wrapped:
            error = wrapped.exc_info[1]
        else:
            self.fail('dispatched a request for version 9.0')
        self.assertIsInstance(error, rpc_dispatcher.UnsupportedVersion)

    def test_api_methods_still_dispatch(self):
        self.assertEqual([], self.dispatch('list_instances'))

    def test_arguments_named_like_the_wrappers_are_invalid_input(self):
        # A raw client can send any argument names; self and ctxt once
        # clashed with the remotable wrapper's own parameters in a
        # TypeError traceback.
        for argument in ('self', 'ctxt'):
            try:
                self.dispatch('list_instances', {argument: None})
            except rpc_dispatcher.ExpectedException as wrapped:
                error = wrapped.exc_info[1]
            else:
                self.fail(f'dispatched with an argument named {argument}')
            self.assertIsInstance(error, exception.InvalidInput)
            self.assertIn(argument, str(error))


class RefusalOverTheBusTest(SurfaceTestCase):
    """A real server and client on the fake driver."""

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(
            level=logging.DEBUG,
            format='%(levelname)s %(name)s %(message)s'))
        self.server.start()
        self.addCleanup(self.server.wait)
        self.addCleanup(self.server.stop)
        self.client = oslo_messaging.get_rpc_client(
            self.transport,
            oslo_messaging.Target(topic=rpc.TOPIC, server=HOST,
                                  version=rpcapi.VERSION),
            timeout=CALL_TIMEOUT)

    def test_caller_gets_a_clear_error_and_the_agent_goes_on(self):
        # The fake driver hands the caller the server's exception itself;
        # over RabbitMQ it arrives as a RemoteError of the same exc_type
        # (tests/functional/test_secrets.py sees that).
        try:
            self.client.call({'request_id': 'req-stray'}, 'drain_started')
        except Exception as error:
            refused = error
        else:
            self.fail('drain_started was dispatched')
        self.assertEqual('NoSuchMethod', getattr(
            refused, 'exc_type', type(refused).__name__))
        self.assertIn('drain_started', str(refused))
        self.assertFalse(self.manager.work.draining)
        self.assertEqual(HOST, self.client.call(
            {'request_id': 'req-after'}, rpc.WAKE_METHOD)['host'])

        logged = self.log.output
        self.assertNotIn('Traceback', logged)
        self.assertNotIn('\nERROR ', '\n' + logged)
        refusals = [line for line in logged.splitlines()
                    if line.startswith('WARNING compute_agent.rpc')]
        self.assertEqual(1, len(refusals), logged)
        self.assertIn("'drain_started'", refusals[0])
        self.assertIn('req-stray', refusals[0])
