"""ComputeManager against a fake driver and a temporary SQLite file."""

import os
import shutil
import tempfile
import threading
import uuid

import oslo_messaging

from compute_agent import db
from compute_agent import endpoints
from compute_agent import exception
from compute_agent import image_store
from compute_agent import manager
from compute_agent import tracker
from tests.fixtures.polling import wait_for
from tests.unit import base
from tests.unit import compute_host
from tests.unit import fakes
from tests.unit import test_db

HOST = 'host-a'


def build_spec(**overrides):
    spec = {'uuid': str(uuid.uuid4()), 'name': 'vm-1', 'vcpus': 1,
            'memory_mb': 128, 'image': {'id': 'img-1', 'properties': {}}}
    spec.update(overrides)
    return spec


class FakeService:
    def __init__(self):
        self.tracker = tracker.InFlightTracker()

    def status(self):
        return {'state': 'running', 'in_flight': [],
                'graceful_shutdown_timeout': 180}


class ManagerTestCase(base.TestCase):
    def setUp(self):
        super().setUp()
        self.state_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.state_dir, True)
        self.db_path = os.path.join(self.state_dir, 'agent.sqlite')
        self.driver = fakes.FakeDriver()
        self.manager = self._new_manager()
        self.ctxt = {'request_id': 'req-test'}

    def _new_manager(self, default_timeout=60):
        database = db.Database(self.db_path)
        self.images_path = os.path.join(self.state_dir, 'images')
        os.makedirs(self.images_path, exist_ok=True)
        compute = manager.ComputeManager(
            host=HOST, driver=self.driver, database=database,
            image_store=image_store.ImageStore(self.images_path, database),
            default_shutdown_timeout=default_timeout,
            shutdown_retry_interval=10)
        return compute_host.ComputeHost(compute, FakeService())

    def boot(self, **overrides):
        return self.manager.build_and_run_instance(
            self.ctxt, build_spec(**overrides))

    def assertRaises(self, exc_class, call, *args, **kwargs):
        """Errors cross RPC as declared expected exceptions: unwrap them,
        which also checks that each one is declared."""
        try:
            call(*args, **kwargs)
        except oslo_messaging.ExpectedException as wrapped:
            error = wrapped.exc_info[1]
        else:
            self.fail(f'{call.__name__} raised nothing')
        self.assertIsInstance(error, exc_class)
        return error

    def _last_action(self, uuid_):
        return self.manager.get_instance_actions(self.ctxt, uuid_)[-1]

    def assertUnchanged(self, before):
        self.assertEqual(before, self.manager.get_instance(
            self.ctxt, before['uuid']))


class LifecycleTest(ManagerTestCase):
    def test_build_returns_active_record_in_contract_shape(self):
        record = self.boot(name='web')
        self.assertEqual(
            {'uuid', 'name', 'host', 'vm_state', 'task_state',
             'power_state', 'flavor', 'image', 'last_power_off',
             'snapshot_id'},
            set(record))
        self.assertEqual(('active', 'running', None, HOST),
                         (record['vm_state'], record['power_state'],
                          record['task_state'], record['host']))
        self.assertEqual({'vcpus': 1, 'memory_mb': 128}, record['flavor'])

    def test_stop_start_reboot_delete(self):
        uuid_ = self.boot()['uuid']
        stopped = self.manager.stop_instance(self.ctxt, uuid_)
        self.assertEqual(('stopped', 'shutdown'),
                         (stopped['vm_state'], stopped['power_state']))
        self.assertEqual({'requested': 'clean', 'result': 'clean',
                          'seconds': 0.5, 'timeout': 60, 'method': 'acpi'},
                         stopped['last_power_off'])
        started = self.manager.start_instance(self.ctxt, uuid_)
        self.assertEqual('active', started['vm_state'])
        rebooted = self.manager.reboot_instance(self.ctxt, uuid_, 'HARD')
        self.assertEqual('forced', rebooted['last_power_off']['result'])
        self.assertEqual('running', rebooted['power_state'])
        deleted = self.manager.terminate_instance(self.ctxt, uuid_)
        self.assertEqual(('deleted', 'nostate'),
                         (deleted['vm_state'], deleted['power_state']))
        self.assertNotIn(uuid_, self.driver.guests)
        self.assertEqual([], self.manager.list_instances(self.ctxt))

    def test_forced_stop_destroys(self):
        uuid_ = self.boot()['uuid']
        record = self.manager.stop_instance(self.ctxt, uuid_,
                                            clean_shutdown=False)
        self.assertEqual(('forced', 'forced'),
                         (record['last_power_off']['requested'],
                          record['last_power_off']['result']))
        self.assertEqual((uuid_, False, 0, 10, False),
                         self.driver.power_off_calls[-1])

    def test_timeout_precedence_reaches_the_driver(self):
        uuid_ = self.boot(image={'id': 'i', 'properties': {
            'os_shutdown_timeout': '25'}})['uuid']
        self.manager.stop_instance(self.ctxt, uuid_)
        self.assertEqual(25, self.driver.power_off_calls[-1][2])
        self.manager.start_instance(self.ctxt, uuid_)
        self.manager.stop_instance(self.ctxt, uuid_, shutdown_timeout=5)
        self.assertEqual(5, self.driver.power_off_calls[-1][2])

    def test_ignoring_guest_is_recorded_as_forced(self):
        uuid_ = self.boot()['uuid']
        self.driver.guests[uuid_]['ignores_acpi'] = True
        record = self.manager.stop_instance(self.ctxt, uuid_)
        self.assertEqual(('clean', 'forced'),
                         (record['last_power_off']['requested'],
                          record['last_power_off']['result']))

    def test_soft_reboot_is_a_clean_power_cycle(self):
        uuid_ = self.boot()['uuid']
        record = self.manager.reboot_instance(self.ctxt, uuid_, 'SOFT')
        self.assertEqual('clean', record['last_power_off']['result'])
        self.assertTrue(self.driver.power_off_calls[-1][1])
        self.assertEqual('active', record['vm_state'])

    def test_delete_of_stopped_instance(self):
        uuid_ = self.boot()['uuid']
        self.manager.stop_instance(self.ctxt, uuid_)
        record = self.manager.terminate_instance(self.ctxt, uuid_)
        self.assertEqual('deleted', record['vm_state'])
        self.assertEqual('already-off', record['last_power_off']['method'])

    def test_status_reports_the_hypervisor_link(self):
        self.assertIsNone(
            self.manager.get_service_status(self.ctxt)['hypervisor'])
        self.driver.health = lambda: {'connected': False,
                                      'last_error': 'libvirtd is gone'}
        self.assertEqual({'connected': False,
                          'last_error': 'libvirtd is gone'},
                         self.manager.get_service_status(self.ctxt)
                         ['hypervisor'])

    def test_status_reports_versions(self):
        status = self.manager.get_service_status(self.ctxt)
        self.assertEqual((HOST, endpoints.SERVICE_VERSION,
                          endpoints.RPC_API_VERSION, 'running'),
                         (status['host'], status['service_version'],
                          status['rpc_api_version'], status['state']))


class InvalidRequestTest(ManagerTestCase):
    def test_unknown_instance(self):
        missing = str(uuid.uuid4())
        for call in (self.manager.get_instance, self.manager.stop_instance,
                     self.manager.start_instance,
                     self.manager.terminate_instance):
            error = self.assertRaises(exception.InstanceNotFound, call,
                                      self.ctxt, missing)
            self.assertIn(missing, str(error))

    def test_bad_arguments_change_nothing(self):
        record = self.boot()
        bad_calls = [
            (self.manager.stop_instance, {'shutdown_timeout': -1}),
            (self.manager.stop_instance, {'shutdown_timeout': 2.5}),
            (self.manager.stop_instance, {'shutdown_timeout': '10'}),
            (self.manager.stop_instance, {'clean_shutdown': 'no'}),
            (self.manager.terminate_instance, {'shutdown_timeout': -5}),
            (self.manager.reboot_instance, {'reboot_type': 'soft'}),
            (self.manager.reboot_instance, {'reboot_type': 'COLD'}),
        ]
        for call, kwargs in bad_calls:
            self.assertRaises(exception.InvalidInput, call, self.ctxt,
                              record['uuid'], **kwargs)
            self.assertUnchanged(record)
        self.assertEqual([], self.driver.power_off_calls)

    def test_malformed_uuid(self):
        self.assertRaises(exception.InvalidInput, self.manager.stop_instance,
                          self.ctxt, 'not-a-uuid')
        self.assertRaises(exception.InvalidInput, self.manager.get_instance,
                          self.ctxt, 42)

    def test_wrong_state(self):
        uuid_ = self.boot()['uuid']
        self.assertRaises(exception.InstanceInvalidState,
                          self.manager.start_instance, self.ctxt, uuid_)
        self.manager.stop_instance(self.ctxt, uuid_)
        error = self.assertRaises(exception.InstanceInvalidState,
                                  self.manager.stop_instance, self.ctxt,
                                  uuid_)
        self.assertIn('stopped', str(error))
        self.assertRaises(exception.InstanceInvalidState,
                          self.manager.reboot_instance, self.ctxt, uuid_,
                          'SOFT')
        self.manager.terminate_instance(self.ctxt, uuid_)
        self.assertRaises(exception.InstanceInvalidState,
                          self.manager.terminate_instance, self.ctxt, uuid_)

    def test_malformed_build_creates_nothing(self):
        for spec in ('x', build_spec(vcpus=0), build_spec(extra=1),
                     build_spec(name='vm\n2026-11-29 forged log line'),
                     build_spec(name='vm\x00'),
                     build_spec(image={'id': 'i', 'properties': {
                         'fake_unbootable': True}})):
            self.assertRaises(exception.InvalidInput,
                              self.manager.build_and_run_instance,
                              self.ctxt, spec)
        self.assertEqual([], self.manager.list_instances(self.ctxt))
        self.assertEqual({}, self.driver.guests)

    def test_duplicate_uuid_is_refused(self):
        record = self.boot()
        self.assertRaises(exception.InvalidInput,
                          self.manager.build_and_run_instance, self.ctxt,
                          build_spec(uuid=record['uuid'], name='other'))
        self.assertUnchanged(record)

    def test_concurrent_builds_of_one_uuid_give_one_instance(self):
        spec = build_spec()
        outcomes = test_db.run_together(
            6, lambda index: self.manager.build_and_run_instance(
                self.ctxt, dict(spec, name=f'vm-{index}')))
        built = [o for o in outcomes if isinstance(o, dict)]
        refused = [o.exc_info[1] for o in outcomes
                   if isinstance(o, oslo_messaging.ExpectedException)]
        self.assertEqual(1, len(built), outcomes)
        self.assertEqual(5, len(refused), outcomes)
        for error in refused:
            self.assertIsInstance(error, exception.InvalidInput)
            self.assertIn('already exists', str(error))
        self.assertEqual(built, self.manager.list_instances(self.ctxt))

    def test_second_operation_on_busy_instance_is_refused(self):
        uuid_ = self.boot()['uuid']
        self.driver.power_off_gate = gate = fakes.BlockingGate()
        stopper = threading.Thread(target=self.manager.stop_instance,
                                   args=(self.ctxt, uuid_))
        stopper.start()
        self.assertTrue(gate.entered.wait(10))
        error = self.assertRaises(exception.InstanceInvalidState,
                                  self.manager.terminate_instance,
                                  self.ctxt, uuid_)
        self.assertIn('powering_off in progress', str(error))
        gate.release()
        stopper.join(10)
        self.assertEqual('stopped', self.manager.get_instance(
            self.ctxt, uuid_)['vm_state'])


class FailureTest(ManagerTestCase):
    def test_failed_build_leaves_error_record(self):
        self.driver.fail_next['spawn'] = exception.HypervisorError(
            action='spawn', instance_uuid='x', reason='no memory')
        spec = build_spec()
        self.assertRaises(exception.HypervisorError,
                          self.manager.build_and_run_instance, self.ctxt,
                          spec)
        record = self.manager.get_instance(self.ctxt, spec['uuid'])
        self.assertEqual(('error', None),
                         (record['vm_state'], record['task_state']))

    def test_unexpected_driver_error_becomes_hypervisor_error(self):
        uuid_ = self.boot()['uuid']
        self.driver.fail_next['power_off'] = RuntimeError('socket closed')
        error = self.assertRaises(exception.HypervisorError,
                                  self.manager.stop_instance, self.ctxt,
                                  uuid_)
        self.assertIn('socket closed', str(error))
        record = self.manager.get_instance(self.ctxt, uuid_)
        self.assertEqual(('active', None),
                         (record['vm_state'], record['task_state']))


class RestartReconcileTest(ManagerTestCase):
    def _interrupt(self, uuid_, **values):
        db.Database(self.db_path).update_instance(uuid_, **values)

    def test_interrupted_stop_is_settled_from_libvirt_state(self):
        uuid_ = self.boot()['uuid']
        self._interrupt(uuid_, task_state='powering_off')
        self.driver.guests[uuid_]['state'] = 'shutdown'
        self.manager = self._new_manager()
        record = self.manager.get_instance(self.ctxt, uuid_)
        self.assertEqual(('stopped', None),
                         (record['vm_state'], record['task_state']))

    def test_interrupted_delete_is_completed(self):
        uuid_ = self.boot()['uuid']
        self._interrupt(uuid_, task_state='deleting')
        self.manager = self._new_manager()
        self.assertEqual('deleted', self.manager.get_instance(
            self.ctxt, uuid_)['vm_state'])
        self.assertNotIn(uuid_, self.driver.guests)

    def test_interrupted_build_is_an_error(self):
        uuid_ = self.boot()['uuid']
        self._interrupt(uuid_, vm_state='building', task_state='spawning')
        self.manager = self._new_manager()
        self.assertEqual('error', self.manager.get_instance(
            self.ctxt, uuid_)['vm_state'])

    def test_interrupted_rescue_is_an_error(self):
        # The guest may be running its rescue system or its own: only an
        # operator can tell which it should be.
        uuid_ = self.boot()['uuid']
        self._interrupt(uuid_, task_state='rescuing')
        self.manager = self._new_manager()
        self.assertEqual('error', self.manager.get_instance(
            self.ctxt, uuid_)['vm_state'])

    def test_an_instance_libvirt_cannot_settle_does_not_block_start(self):
        broken, fine = self.boot()['uuid'], self.boot()['uuid']
        db.Database(self.db_path).start_action(broken, None, 'delete')
        self._interrupt(broken, task_state='deleting')
        self._interrupt(fine, task_state='powering_off')
        self.driver.guests[fine]['state'] = 'shutdown'
        self.driver.fail_next['delete'] = exception.HypervisorError(
            action='delete', instance_uuid=broken, reason='busy')
        self.manager = self._new_manager()
        self.assertEqual(('error', None), _states(
            self.manager.get_instance(self.ctxt, broken)))
        self.assertEqual(('stopped', None), _states(
            self.manager.get_instance(self.ctxt, fine)))
        self.assertIn('could not settle', self._last_action(broken)[
            'message'])

    def test_an_unexpected_error_settling_one_instance_does_not_block(self):
        # A bug met while settling one instance must not keep the agent
        # from starting (a restart loop would take every guest with it).
        broken, fine = self.boot()['uuid'], self.boot()['uuid']
        self._interrupt(broken, task_state='deleting')
        self._interrupt(fine, task_state='powering_off')
        self.driver.fail_next['delete'] = RuntimeError('unexpected')
        self.manager = self._new_manager()
        self.assertEqual(('error', None), _states(
            self.manager.get_instance(self.ctxt, broken)))
        self.assertEqual(('active', None), _states(
            self.manager.get_instance(self.ctxt, fine)))


class InterruptedActionTest(ManagerTestCase):
    """A crash leaves the action of the operation it cut short open; the
    next start closes it and says what the recovery did."""

    def _crash_during(self, uuid_, action, **values):
        """The records a SIGKILL leaves in the middle of action."""
        database = db.Database(self.db_path)
        database.start_action(uuid_, 'req-crashed', action)
        if values:
            database.update_instance(uuid_, **values)

    def test_open_action_of_an_interrupted_stop_is_closed(self):
        uuid_ = self.boot()['uuid']
        self._crash_during(uuid_, 'stop', task_state='powering_off')
        self.manager = self._new_manager()
        actions = self.manager.get_instance_actions(self.ctxt, uuid_)
        self.assertEqual([('build', 'success'), ('stop', 'interrupted')],
                         [(a['action'], a['result']) for a in actions])
        stop = actions[-1]
        self.assertEqual('req-crashed', stop['request_id'])
        self.assertIsNotNone(stop['finish_time'])
        self.assertEqual(
            'interrupted by a stop of the agent; at restart libvirt '
            'reported the guest running, so the instance is now active',
            stop['message'])

    def test_interrupted_delete_says_the_restart_finished_it(self):
        uuid_ = self.boot()['uuid']
        self._crash_during(uuid_, 'delete', task_state='deleting')
        self.manager = self._new_manager()
        action = self._last_action(uuid_)
        self.assertEqual('interrupted', action['result'])
        self.assertIn('deleted the guest', action['message'])
        self.assertIn('now deleted', action['message'])

    def test_interrupted_build_says_the_instance_is_now_error(self):
        uuid_ = self.boot()['uuid']
        self._crash_during(uuid_, 'build', vm_state='building',
                           task_state='spawning')
        self.manager = self._new_manager()
        action = self._last_action(uuid_)
        self.assertEqual('interrupted', action['result'])
        self.assertIn('now error', action['message'])

    def test_build_killed_before_its_action_was_recorded(self):
        # The record is written first (its insert is the uuid check); a
        # kill before the build's action leaves none. The restart records
        # one, so the error instance says why it is error.
        database = db.Database(self.db_path)
        uuid_ = str(uuid.uuid4())
        database.create_instance(
            uuid=uuid_, name='half', host=HOST,
            vm_state='building', task_state='spawning',
            power_state='nostate', vcpus=1, memory_mb=64,
            image={'id': 'img', 'properties': {}}, last_power_off=None)
        self.manager = self._new_manager()
        [action] = self.manager.get_instance_actions(self.ctxt, uuid_)
        self.assertEqual(('build', 'interrupted'),
                         (action['action'], action['result']))
        self.assertIsNone(action['request_id'])
        self.assertIsNotNone(action['finish_time'])
        self.assertIn('before its action was recorded', action['message'])
        self.assertIn('now error', action['message'])

    def test_action_left_open_after_its_operation_ended(self):
        # Killed between committing the outcome and closing the action:
        # nothing is left to settle, and the action says so.
        uuid_ = self.boot()['uuid']
        self._crash_during(uuid_, 'start')
        self.manager = self._new_manager()
        action = self._last_action(uuid_)
        self.assertEqual('interrupted', action['result'])
        self.assertEqual(
            'interrupted by a stop of the agent; at restart nothing was '
            'left to settle: the instance was active', action['message'])

    def _disk_image(self):
        return {'id': 'i', 'properties': {}, 'disk': '/base.qcow2'}

    def test_offload_killed_after_the_guest_went_can_be_unshelved(self):
        # Killed after the guest was removed, before the record said so:
        # the disk survives only in the snapshot, which the record does
        # not name yet. Settling it as error would lose the guest.
        uuid_ = self.boot(image=self._disk_image())['uuid']
        offloaded = self.manager.shelve_offload_instance(self.ctxt, uuid_)
        self._crash_during(uuid_, 'shelve-offload', vm_state='active',
                           task_state='shelving_offloading',
                           snapshot_id=None, power_state='running')
        self.manager = self._new_manager()
        record = self.manager.get_instance(self.ctxt, uuid_)
        self.assertEqual(
            ('shelved_offloaded', 'nostate', None,
             offloaded['snapshot_id']),
            (record['vm_state'], record['power_state'],
             record['task_state'], record['snapshot_id']))
        self.assertIn(f'kept the disk as snapshot '
                      f'{offloaded["snapshot_id"]}',
                      self._last_action(uuid_)['message'])
        back = self.manager.unshelve_instance(self.ctxt, uuid_)
        self.assertEqual('active', back['vm_state'])

    def test_shelve_killed_after_its_snapshot_is_shelved(self):
        uuid_ = self.boot(image=self._disk_image())['uuid']
        shelved = self.manager.shelve_instance(self.ctxt, uuid_)
        self._crash_during(uuid_, 'shelve', vm_state='active',
                           task_state='shelving', snapshot_id=None)
        self.manager = self._new_manager()
        record = self.manager.get_instance(self.ctxt, uuid_)
        self.assertEqual(('shelved', 'shutdown', shelved['snapshot_id']),
                         (record['vm_state'], record['power_state'],
                          record['snapshot_id']))

    def test_shelve_killed_before_its_snapshot_is_stopped(self):
        uuid_ = self.boot()['uuid']
        self.manager.stop_instance(self.ctxt, uuid_)
        self._crash_during(uuid_, 'shelve', vm_state='active',
                           task_state='shelving')
        self.manager = self._new_manager()
        record = self.manager.get_instance(self.ctxt, uuid_)
        self.assertEqual(('stopped', None, None),
                         (record['vm_state'], record['task_state'],
                          record['snapshot_id']))

    def _settled(self, uuid_):
        record = self.manager.get_instance(self.ctxt, uuid_)
        return (record['vm_state'], record['power_state'],
                record['task_state'], record['snapshot_id'])

    def test_unshelve_killed_before_the_spawn_can_be_retried(self):
        # unshelve.claimed (seen writing the crash matrix's retries):
        # settled as error, which unshelve refuses, the disk was left
        # only in a snapshot that a delete would drop.
        uuid_ = self.boot(image=self._disk_image())['uuid']
        offloaded = self.manager.shelve_offload_instance(self.ctxt, uuid_)
        self._crash_during(uuid_, 'unshelve', task_state='unshelving')
        self.manager = self._new_manager()
        self.assertEqual(('shelved_offloaded', 'nostate', None,
                          offloaded['snapshot_id']), self._settled(uuid_))
        self.assertIn('can be unshelved again',
                      self._last_action(uuid_)['message'])
        back = self.manager.unshelve_instance(self.ctxt, uuid_)
        self.assertEqual('active', back['vm_state'])

    def test_unshelve_of_a_shelved_guest_killed_before_its_start(self):
        uuid_ = self.boot(image=self._disk_image())['uuid']
        shelved = self.manager.shelve_instance(self.ctxt, uuid_)
        self._crash_during(uuid_, 'unshelve', task_state='unshelving')
        self.manager = self._new_manager()
        self.assertEqual(('shelved', 'shutdown', None,
                          shelved['snapshot_id']), self._settled(uuid_))

    def test_unshelve_killed_after_the_boot_finishes_it(self):
        # unshelve.booted: the guest runs; its snapshot goes, as the
        # unshelve would have dropped it next.
        uuid_ = self.boot(image=self._disk_image())['uuid']
        shelved = self.manager.shelve_instance(self.ctxt, uuid_)
        path = self.manager.images.get(shelved['snapshot_id'])['path']
        self.driver.guests[uuid_]['state'] = 'running'
        self._crash_during(uuid_, 'unshelve', task_state='unshelving')
        self.manager = self._new_manager()
        self.assertEqual(('active', 'running', None, None),
                         self._settled(uuid_))
        self.assertEqual([], db.Database(self.db_path).list_snapshot_ids(
            uuid_))
        self.assertFalse(os.path.exists(path))

    def test_unshelve_killed_after_its_snapshot_went_is_active(self):
        # unshelve.snapshot_deleted: the record still names the snapshot
        # that is gone.
        uuid_ = self.boot(image=self._disk_image())['uuid']
        offloaded = self.manager.shelve_offload_instance(self.ctxt, uuid_)
        self.manager.unshelve_instance(self.ctxt, uuid_)
        self._crash_during(uuid_, 'unshelve', vm_state='shelved_offloaded',
                           task_state='unshelving',
                           snapshot_id=offloaded['snapshot_id'])
        self.manager = self._new_manager()
        self.assertEqual(('active', 'running', None, None),
                         self._settled(uuid_))

    def test_interrupted_delete_drops_the_snapshots(self):
        uuid_ = self.boot(image=self._disk_image())['uuid']
        shelved = self.manager.shelve_instance(self.ctxt, uuid_)
        path = self.manager.images.get(shelved['snapshot_id'])['path']
        self._crash_during(uuid_, 'delete', task_state='deleting')
        self.manager = self._new_manager()
        database = db.Database(self.db_path)
        self.assertEqual([], database.list_snapshot_ids(uuid_))
        self.assertFalse(os.path.exists(path))
        self.assertIsNone(database.get_instance(uuid_)['snapshot_id'])

    def test_closed_actions_stay_as_they_were(self):
        uuid_ = self.boot()['uuid']
        self.manager.stop_instance(self.ctxt, uuid_)
        before = self.manager.get_instance_actions(self.ctxt, uuid_)
        self.manager = self._new_manager()
        self.assertEqual(before, self.manager.get_instance_actions(
            self.ctxt, uuid_))


def _states(record):
    return record['vm_state'], record['task_state']


class ArgumentShapeTest(ManagerTestCase):
    def test_unknown_or_missing_arguments_are_invalid_input(self):
        record = self.boot()
        error = self.assertRaises(exception.InvalidInput,
                                  self.manager.stop_instance, self.ctxt,
                                  instance_uuid=record['uuid'], force=True)
        self.assertIn('force', str(error))
        self.assertRaises(exception.InvalidInput,
                          self.manager.get_instance, self.ctxt)
        self.assertRaises(exception.InvalidInput,
                          self.manager.list_instances, self.ctxt, host='x')
        self.assertUnchanged(record)


class FakeServiceWithWork(FakeService):
    """Reports one in-flight request, as the tracker would."""

    def __init__(self, request_id):
        super().__init__()
        self.request_id = request_id

    def status(self):
        return {'state': 'running', 'graceful_shutdown_timeout': 180,
                'in_flight': [{'method': 'stop_instance',
                               'request_id': self.request_id,
                               'instance_uuid': None, 'elapsed': 1.0}]}


class ForceOverrideTest(ManagerTestCase):
    def _start_waiting_stop(self, uuid_):
        """A clean stop of a guest that waits until forced, in a thread."""
        self.driver.guests[uuid_]['waits_for_force'] = True
        results = {}
        stopper = threading.Thread(
            target=lambda: results.update(first=self.manager.stop_instance(
                {'request_id': 'req-clean'}, uuid_)))
        stopper.start()
        wait_for(self.manager.power_offs.progress, 10,
                 'the clean power-off waiting')
        return stopper, results

    def test_forced_stop_cuts_a_clean_stop_short(self):
        uuid_ = self.boot()['uuid']
        stopper, results = self._start_waiting_stop(uuid_)
        second = self.manager.stop_instance(self.ctxt, uuid_,
                                            clean_shutdown=False)
        stopper.join(10)
        self.assertEqual('forced', results['first']['last_power_off']
                         ['result'])
        self.assertEqual(('stopped', None),
                         (second['vm_state'], second['task_state']))

    def test_forced_delete_cuts_a_clean_stop_short_then_deletes(self):
        uuid_ = self.boot()['uuid']
        stopper, results = self._start_waiting_stop(uuid_)
        deleted = self.manager.terminate_instance(self.ctxt, uuid_,
                                                  clean_shutdown=False)
        stopper.join(10)
        self.assertEqual('forced', results['first']['last_power_off']
                         ['result'])
        self.assertEqual('deleted', deleted['vm_state'])

    def test_hard_reboot_cuts_a_clean_stop_short_then_reboots(self):
        uuid_ = self.boot()['uuid']
        stopper, results = self._start_waiting_stop(uuid_)
        # Should the reboot be refused, the waiting stop still ends.
        self.addCleanup(stopper.join, 10)
        self.addCleanup(self.manager.power_offs.force, uuid_)
        rebooted = self.manager.reboot_instance(self.ctxt, uuid_, 'HARD')
        stopper.join(10)
        self.assertEqual('forced', results['first']['last_power_off']
                         ['result'])
        self.assertEqual(('active', 'running', None),
                         (rebooted['vm_state'], rebooted['power_state'],
                          rebooted['task_state']))
        self.assertEqual(['build', 'stop', 'hard-reboot'], [
            a['action'] for a in self.manager.get_instance_actions(
                self.ctxt, uuid_)])

    def test_soft_reboot_does_not_cut_a_clean_stop_short(self):
        uuid_ = self.boot()['uuid']
        stopper, _ = self._start_waiting_stop(uuid_)
        self.addCleanup(stopper.join, 10)
        self.addCleanup(self.manager.power_offs.force, uuid_)
        self.assertRaises(exception.InstanceInvalidState,
                          self.manager.reboot_instance, self.ctxt, uuid_,
                          'SOFT')

    def test_force_on_a_guest_already_off(self):
        uuid_ = self.boot()['uuid']
        self.manager.stop_instance(self.ctxt, uuid_)
        # Nothing is waiting to be cut short: a forced stop of a stopped
        # instance is refused like a clean one, with the reason.
        error = self.assertRaises(exception.InstanceInvalidState,
                                  self.manager.stop_instance, self.ctxt,
                                  uuid_, clean_shutdown=False)
        self.assertIn('stopped', str(error))
        deleted = self.manager.terminate_instance(self.ctxt, uuid_,
                                                  clean_shutdown=False)
        self.assertEqual(('forced', 'clean', 'already-off'),
                         (deleted['last_power_off']['requested'],
                          deleted['last_power_off']['result'],
                          deleted['last_power_off']['method']))

    def test_forced_stop_between_a_clean_claim_and_its_power_off(self):
        """A forced stop that comes after a clean stop claimed the
        instance, but before its power-off began, forces it."""
        uuid_ = self.boot()['uuid']
        self.driver.guests[uuid_]['waits_for_force'] = True
        claimed, release = threading.Event(), threading.Event()
        real_power_state = self.driver.get_power_state

        def power_state_after_release(instance_uuid):
            # Asked first by the clean stop's power-off, after its claim.
            if not claimed.is_set():
                claimed.set()
                release.wait(10)
            return real_power_state(instance_uuid)
        self.driver.get_power_state = power_state_after_release
        results = {}
        clean = threading.Thread(
            target=lambda: results.update(clean=self.manager.stop_instance(
                {'request_id': 'req-clean'}, uuid_)))
        clean.start()
        self.addCleanup(clean.join, 10)
        self.addCleanup(release.set)
        wait_for(claimed.is_set, 10, 'the clean stop claiming')
        registry = self.manager.power_offs
        real_force, forced_calls = registry.force, []
        registry.force = lambda instance_uuid: forced_calls.append(
            real_force(instance_uuid)) or forced_calls[-1]
        forced = threading.Thread(
            target=lambda: results.update(forced=self.manager.stop_instance(
                self.ctxt, uuid_, clean_shutdown=False)))
        forced.start()
        # Refused at once, or it forced the power-off and waits for the
        # clean stop to end.
        wait_for(lambda: forced_calls or not forced.is_alive(), 10,
                 'the forced stop reaching the clean one')
        release.set()
        clean.join(10)
        forced.join(10)
        self.assertEqual(('forced', 'stopped'), (
            results['clean']['last_power_off']['result'],
            results.get('forced', {}).get('vm_state')))

    def test_a_clean_second_request_is_still_refused(self):
        uuid_ = self.boot()['uuid']
        stopper, _ = self._start_waiting_stop(uuid_)
        self.assertRaises(exception.InstanceInvalidState,
                          self.manager.terminate_instance, self.ctxt, uuid_)
        self.manager.stop_instance(self.ctxt, uuid_, clean_shutdown=False)
        stopper.join(10)

    def test_progress_of_the_waiting_power_off_is_in_the_status(self):
        uuid_ = self.boot()['uuid']
        self.manager.serve(FakeServiceWithWork('req-clean'))
        stopper, _ = self._start_waiting_stop(uuid_)
        status = self.manager.get_service_status(self.ctxt)
        progress = status['in_flight'][0]['power_off']
        self.assertEqual((60, 'acpi', 1),
                         (progress['timeout'], progress['method'],
                          progress['requests']))
        self.manager.stop_instance(self.ctxt, uuid_, clean_shutdown=False)
        stopper.join(10)


class GuestAgentAndPausedTest(ManagerTestCase):
    def test_guest_agent_property_asks_the_agent_first(self):
        uuid_ = self.boot(image={'id': 'i', 'properties': {
            'hw_qemu_guest_agent': 'yes'}})['uuid']
        record = self.manager.stop_instance(self.ctxt, uuid_)
        self.assertTrue(self.driver.power_off_calls[-1][4])
        self.assertEqual('guest-agent', record['last_power_off']['method'])

    def test_paused_guest_takes_the_forced_path_and_says_so(self):
        uuid_ = self.boot()['uuid']
        self.driver.guests[uuid_]['state'] = 'paused'
        record = self.manager.shelve_instance(self.ctxt, uuid_)
        last = record['last_power_off']
        self.assertEqual(('clean', 'forced'),
                         (last['requested'], last['result']))
        self.assertIn('paused', last['note'])
        self.assertFalse(self.driver.power_off_calls[-1][1])


class RescueTest(ManagerTestCase):
    def test_rescue_with_own_image_and_unrescue(self):
        record = self.boot()
        rescued = self.manager.rescue_instance(self.ctxt, record['uuid'])
        self.assertEqual(('rescued', 'running'),
                         (rescued['vm_state'], rescued['power_state']))
        self.assertEqual('clean', rescued['last_power_off']['result'])
        self.assertEqual(record['image'],
                         self.driver.guests[record['uuid']]['rescue'])
        back = self.manager.unrescue_instance(self.ctxt, record['uuid'])
        self.assertEqual('active', back['vm_state'])
        self.assertIsNone(self.driver.guests[record['uuid']]['rescue'])

    def test_rescue_from_a_given_image_of_a_stopped_guest(self):
        uuid_ = self.boot()['uuid']
        self.manager.stop_instance(self.ctxt, uuid_)
        image = {'id': 'rescue-cd', 'properties': {}, 'kernel': '/k',
                 'ramdisk': '/r'}
        rescued = self.manager.rescue_instance(self.ctxt, uuid_,
                                               rescue_image=image,
                                               clean_shutdown=False)
        self.assertEqual('already-off',
                         rescued['last_power_off']['method'])
        self.assertEqual('rescue-cd',
                         self.driver.guests[uuid_]['rescue']['id'])

    def test_unknown_or_malformed_rescue_image_changes_nothing(self):
        record = self.boot()
        for rescue_image in ('no-such-snapshot', {'id': 'x', 'bogus': 1},
                             42):
            self.assertRaises(exception.InvalidInput,
                              self.manager.rescue_instance, self.ctxt,
                              record['uuid'], rescue_image=rescue_image)
            self.assertUnchanged(record)
        self.assertEqual([], self.driver.power_off_calls)

    def test_unrescue_needs_a_rescued_instance(self):
        uuid_ = self.boot()['uuid']
        self.assertRaises(exception.InstanceInvalidState,
                          self.manager.unrescue_instance, self.ctxt, uuid_)


class ShelveTest(ManagerTestCase):
    def test_shelve_and_unshelve_a_guest_with_a_disk(self):
        uuid_ = self.boot(image={'id': 'i', 'properties': {},
                                 'disk': '/base.qcow2'})['uuid']
        shelved = self.manager.shelve_instance(self.ctxt, uuid_,
                                               shutdown_timeout=5)
        self.assertEqual(('shelved', 'shutdown', 5),
                         (shelved['vm_state'], shelved['power_state'],
                          shelved['last_power_off']['timeout']))
        snapshot = self.manager.images.get(shelved['snapshot_id'])
        self.assertTrue(os.path.isfile(snapshot['path']))
        back = self.manager.unshelve_instance(self.ctxt, uuid_)
        self.assertEqual(('active', None),
                         (back['vm_state'], back['snapshot_id']))
        self.assertFalse(os.path.exists(snapshot['path']))

    def test_offload_directly_then_unshelve_from_the_snapshot(self):
        uuid_ = self.boot(image={'id': 'i', 'properties': {},
                                 'disk': '/base.qcow2'})['uuid']
        offloaded = self.manager.shelve_offload_instance(self.ctxt, uuid_)
        self.assertEqual(('shelved_offloaded', 'nostate'),
                         (offloaded['vm_state'], offloaded['power_state']))
        self.assertNotIn(uuid_, self.driver.guests)
        snapshot_path = self.manager.images.get(
            offloaded['snapshot_id'])['path']
        self.manager.unshelve_instance(self.ctxt, uuid_)
        self.assertEqual(snapshot_path,
                         self.driver.guests[uuid_]['image']['disk'])

    def test_offload_after_shelve_skips_the_power_off(self):
        uuid_ = self.boot()['uuid']
        shelved = self.manager.shelve_instance(self.ctxt, uuid_)
        calls = len(self.driver.power_off_calls)
        offloaded = self.manager.shelve_offload_instance(self.ctxt, uuid_)
        self.assertEqual(calls, len(self.driver.power_off_calls))
        self.assertEqual(shelved['last_power_off'],
                         offloaded['last_power_off'])
        self.assertEqual(shelved['snapshot_id'], offloaded['snapshot_id'])

    def test_diskless_guest_snapshot_says_it_had_no_disk(self):
        uuid_ = self.boot()['uuid']
        shelved = self.manager.shelve_instance(self.ctxt, uuid_)
        snapshot = self.manager.images.get(shelved['snapshot_id'])
        self.assertEqual((None, None), (snapshot['path'], snapshot['size']))

    def test_shelve_of_a_deleted_instance_is_refused(self):
        uuid_ = self.boot()['uuid']
        self.manager.terminate_instance(self.ctxt, uuid_)
        self.assertRaises(exception.InstanceInvalidState,
                          self.manager.shelve_instance, self.ctxt, uuid_)

    def test_delete_of_a_shelved_instance_drops_its_snapshot(self):
        uuid_ = self.boot(image={'id': 'i', 'properties': {},
                                 'disk': '/base.qcow2'})['uuid']
        snapshot_id = self.manager.shelve_offload_instance(
            self.ctxt, uuid_)['snapshot_id']
        self.manager.terminate_instance(self.ctxt, uuid_)
        self.assertIsNone(self.manager.images.get(snapshot_id))

    def test_delete_drops_a_snapshot_its_record_never_named(self):
        # A shelve killed after its snapshot was recorded, before the
        # instance's record named it (failpoint shelve.snapshotted).
        uuid_ = self.boot()['uuid']
        snapshot_id, path = self.manager.images.new_snapshot()
        self.manager.images.record(snapshot_id, uuid_, None, None,
                                   {'id': 'i', 'properties': {}})
        self.manager.terminate_instance(self.ctxt, uuid_)
        self.assertIsNone(self.manager.images.get(snapshot_id))


class ConsoleOutputTest(ManagerTestCase):
    def test_tail_of_the_console_log(self):
        uuid_ = self.boot()['uuid']
        self.driver.guests[uuid_]['console'] = 'boot\nREADY\n'
        self.assertEqual('boot\nREADY\n', self.manager.get_console_output(
            self.ctxt, uuid_))
        self.assertEqual('READY\n', self.manager.get_console_output(
            self.ctxt, uuid_, max_bytes=6))

    def test_bad_requests(self):
        uuid_ = self.boot()['uuid']
        for max_bytes in (0, -1, 2 * 1024 * 1024, '10', True):
            self.assertRaises(exception.InvalidInput,
                              self.manager.get_console_output, self.ctxt,
                              uuid_, max_bytes=max_bytes)
        self.assertRaises(exception.InstanceNotFound,
                          self.manager.get_console_output, self.ctxt,
                          str(uuid.uuid4()))


class ActionRecordTest(ManagerTestCase):
    def test_each_operation_leaves_an_action(self):
        uuid_ = self.boot()['uuid']
        self.manager.stop_instance({'request_id': 'req-stop'}, uuid_)
        self.assertRaises(exception.InstanceInvalidState,
                          self.manager.stop_instance,
                          {'request_id': 'req-again'}, uuid_)
        actions = self.manager.get_instance_actions(self.ctxt, uuid_)
        self.assertEqual(
            [('build', 'success'), ('stop', 'success'), ('stop', 'error')],
            [(a['action'], a['result']) for a in actions])
        self.assertEqual('clean', actions[1]['power_off']['result'])
        self.assertEqual('req-stop', actions[1]['request_id'])
        self.assertIn('stopped', actions[2]['message'])
        self.assertIsNotNone(actions[2]['finish_time'])

    def test_bad_input_leaves_no_action(self):
        uuid_ = self.boot()['uuid']
        self.assertRaises(exception.InvalidInput, self.manager.stop_instance,
                          self.ctxt, uuid_, shutdown_timeout=-1)
        self.assertEqual(['build'], [a['action'] for a in
                                     self.manager.get_instance_actions(
                                         self.ctxt, uuid_)])
