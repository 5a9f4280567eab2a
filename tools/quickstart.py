"""A narrated walk-through of compute-agent on embedded defaults.

Run by tools/quickstart.sh with the python of a venv that has the package
installed. It starts a private RabbitMQ and one agent on libvirt's
test:///default driver, drives it with the real ``compute-agent-client``
CLI (each command printed as typed, with its real output), then shows the
SIGTERM drain and a request that waits on the broker for the next start.

Every step checks its outcome, so the walk-through is also a smoke test:
the exit status is 0 only if everything behaved as narrated. Agent logs go
to a file (its path is printed); all temporary files are removed at the
end, also after a failure or Ctrl-C.
"""

import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import uuid

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The broker and raw RPC helpers live with the tests, not in the package.
sys.path.insert(0, REPO_ROOT)

from tests.fixtures import rabbitmq  # noqa: E402
from tests.fixtures import rpc as raw_rpc  # noqa: E402
# Its sibling, found because the script's own directory is on sys.path.
from quickstart_support import (  # noqa: E402
    Agent, StepFailed, check, format_fields, ok, say, section, show_output)

HOST = 'quickstart-host'
# Where oslo.messaging's rabbit driver queues requests for one server.
PRIMARY_QUEUE = f'compute.{HOST}'
IMAGE_SHUTDOWN_TIMEOUT = 20
CLI_TIMEOUT = 120
LOG_TAIL_LINES = 30

# The CLI and the daemon are the venv's console scripts, next to its python.
# (sys.prefix, not the resolved executable: the venv's python is a symlink.)
VENV_BIN = os.path.join(sys.prefix, 'bin')


# -- the walk-through ------------------------------------------------------

class Walkthrough:
    def __init__(self, work_dir):
        self.work_dir = work_dir
        self.config_file = os.path.join(work_dir, 'compute-agent.conf')
        self.log_file = os.path.join(work_dir, 'compute-agent.log')
        self.state_path = os.path.join(work_dir, 'state')
        self.env = dict(os.environ,
                        PATH=VENV_BIN + os.pathsep + os.environ['PATH'])
        self.broker = None
        self.agent = None
        self.rpc = None
        self.figures = []  # (what, value) printed at the end

    # The CLI, run as the operator would type it.
    def cli(self, *args, expect_status=0):
        command = ['compute-agent-client', '--config-file',
                   self.config_file, *args]
        print(f'\n  $ {shlex.join(command)}', flush=True)
        started = time.monotonic()
        result = subprocess.run(command, env=self.env, capture_output=True,
                                text=True, timeout=CLI_TIMEOUT)
        took = time.monotonic() - started
        show_output(result.stdout)
        show_output(result.stderr)
        print(f'    [exit status {result.returncode}, {took:.2f} s]',
              flush=True)
        check(result.returncode == expect_status,
              f'{shlex.join(args)} exited with {result.returncode}, '
              f'expected {expect_status}')
        return result

    # Checks read the record over the raw wire client (tests/fixtures/
    # rpc.py), not the CLI's table, so they hold whatever the table shows.
    def record(self, instance_uuid):
        return self.rpc.call('get_instance', instance_uuid=instance_uuid)

    def expect_state(self, instance_uuid, vm_state, power_state):
        record = self.record(instance_uuid)
        check((record['vm_state'], record['power_state'])
              == (vm_state, power_state),
              f'expected {vm_state}/{power_state}, the agent reports '
              f'{record["vm_state"]}/{record["power_state"]}')
        check(record['task_state'] is None,
              f'task_state is still {record["task_state"]}')
        return record

    def expect_power_off(self, instance_uuid, requested, result,
                         timeout=None):
        """Check last_power_off; timeout None: whatever was recorded."""
        last = self.expect_state(instance_uuid, 'stopped',
                                 'shutdown')['last_power_off']
        check(last is not None, 'no last_power_off recorded')
        expected = (requested, result,
                    last['timeout'] if timeout is None else timeout)
        seen = (last['requested'], last['result'], last['timeout'])
        check(seen == expected,
              f'last power-off was {seen}, expected {expected}')
        return last

    def run(self):
        self.start_broker()
        self.write_config()
        self.start_agent()
        instance_uuid = self.boot_and_show()
        self.power_off_variants(instance_uuid)
        self.bad_requests(instance_uuid)
        self.delete_and_list(instance_uuid)
        self.sigterm_drain()
        queued_uuid = self.queue_while_stopped()
        self.restart_and_build(queued_uuid)
        self.final_stop()
        self.print_figures()

    def start_broker(self):
        section('Start a private RabbitMQ broker')
        say('The agent takes its work over oslo.messaging. This broker is '
            'a node of its own (own name, ports, cookie and data under a '
            'temp dir), so it neither needs nor disturbs a system RabbitMQ.')
        self.broker = rabbitmq.RabbitMQBroker()
        self.broker.start()
        ok(f'node {self.broker.node} on 127.0.0.1:{self.broker.port}, '
           f'ready after {self.broker.start_seconds:.1f} s')
        self.figures.append(('RabbitMQ ready',
                             f'{self.broker.start_seconds:.1f} s'))
        client = raw_rpc.AgentRPCClient(self.broker.transport_url, HOST)
        client.setUp()  # a fixture that fails setUp cleans itself up
        self.rpc = client

    def write_config(self):
        section('Write the agent configuration')
        os.mkdir(self.state_path)
        config = textwrap.dedent(f"""\
            [DEFAULT]
            host = {HOST}
            transport_url = {self.broker.transport_url}
            state_path = {self.state_path}
            log_file = {self.log_file}
            # Seconds a guest gets to power off cleanly, unless the image
            # (os_shutdown_timeout) or the request says otherwise.
            shutdown_timeout = 30
            # How long a SIGTERM may drain work in flight before exiting.
            graceful_shutdown_timeout = 60

            [libvirt]
            # libvirt's built-in test hypervisor: no daemon, no real guests.
            connection_uri = test:///default
            """)
        with open(self.config_file, 'w') as config_out:
            config_out.write(config)
        say(f'{self.config_file}:')
        show_output(config)
        say(f'The agent logs to {self.log_file}; follow it with tail -f '
            f'in another terminal.')

    def start_agent(self):
        section('Start the agent')
        say('systemd runs the agent as a Type=notify service: it reports '
            'READY=1 on $NOTIFY_SOCKET once both RPC servers (topics '
            'compute and compute-alt) consume. Here a socket of this script '
            'stands in for systemd.')
        self.agent = Agent(self.config_file, self.work_dir, self.env)
        print(f'\n  $ NOTIFY_SOCKET={self.agent.notify_socket} '
              f'{shlex.join(self.agent.command)} &', flush=True)
        self.agent.start()
        seconds, ready = self.agent.wait_ready()
        ok(f'pid {self.agent.process.pid} sent {format_fields(ready)} '
           f'{seconds:.2f} s after it was started')
        self.figures.append(('agent start to READY=1', f'{seconds:.2f} s'))
        self.cli('status')

    def boot_and_show(self):
        section('Boot an instance')
        say(f'The image property os_shutdown_timeout={IMAGE_SHUTDOWN_TIMEOUT} '
            f'gives this guest {IMAGE_SHUTDOWN_TIMEOUT} s to power off '
            f'cleanly, instead of the agent\'s shutdown_timeout (30 s).')
        self.cli('boot', 'demo-1', '--property',
                 f'os_shutdown_timeout={IMAGE_SHUTDOWN_TIMEOUT}')
        booted = [r for r in self.rpc.call('list_instances')
                  if r['name'] == 'demo-1']
        check(len(booted) == 1, f'expected one demo-1, the agent lists '
                                f'{len(booted)}')
        instance_uuid = booted[0]['uuid']
        self.expect_state(instance_uuid, 'active', 'running')
        ok(f'demo-1 is active and running; the next commands name it by '
           f'its uuid {instance_uuid}')
        self.cli('show', instance_uuid)
        return instance_uuid

    def power_off_variants(self, instance_uuid):
        section('Stop: a clean power-off')
        say('stop first asks the guest to shut down (ACPI) and destroys it '
            'only if it is still running when its timeout runs out.')
        self.cli('stop', instance_uuid)
        last = self.expect_power_off(instance_uuid, 'clean', 'clean',
                                     IMAGE_SHUTDOWN_TIMEOUT)
        ok(f'last power-off: clean, in {last["seconds"]:.2f} s; timeout '
           f'{IMAGE_SHUTDOWN_TIMEOUT} s, from the image property')
        self.cli('start', instance_uuid)
        self.expect_state(instance_uuid, 'active', 'running')
        ok('running again')

        section('Stop --force: a forced power-off')
        say('--force skips the guest\'s shutdown and destroys the domain at '
            'once, as a hard reboot does.')
        self.cli('stop', '--force', instance_uuid)
        # A forced power-off gives the guest no time, so its timeout is
        # not checked.
        last = self.expect_power_off(instance_uuid, 'forced', 'forced')
        ok(f'last power-off: forced, requested forced, in '
           f'{last["seconds"]:.2f} s')
        self.cli('start', instance_uuid)
        self.expect_state(instance_uuid, 'active', 'running')
        ok('running again')

        section('Stop --timeout 5: the request\'s own timeout')
        say('A timeout given with the request wins over the image property '
            'and the agent\'s default.')
        self.cli('stop', '--timeout', '5', instance_uuid)
        self.expect_power_off(instance_uuid, 'clean', 'clean', 5)
        ok('last power-off: clean, timeout 5 s, from the request')

    def bad_requests(self, instance_uuid):
        section('Bad requests get a clear error, not a traceback')
        say('The agent refuses a bad request with one line saying why, and '
            'the CLI exits with status 1; the agent and the instance are '
            'unharmed.')
        for args in (('stop', 'not-a-uuid'), ('stop', instance_uuid),
                     ('reboot', instance_uuid)):
            result = self.cli(*args, expect_status=1)
            lines = result.stderr.strip().splitlines()
            check(len(lines) == 1 and lines[0].startswith('error: '),
                  f'expected a one-line "error: ..." from '
                  f'{shlex.join(args)}, got {result.stderr!r}')
        ok('three refusals, each one line, each exit status 1')
        self.expect_state(instance_uuid, 'stopped', 'shutdown')
        ok('demo-1 is still stopped, as it was')

    def delete_and_list(self, instance_uuid):
        section('Delete the instance')
        self.cli('delete', instance_uuid)
        remaining = [r['uuid'] for r in self.rpc.call('list_instances')]
        check(instance_uuid not in remaining,
              'demo-1 is still listed after delete')
        self.cli('list')
        ok('demo-1 is gone from the host\'s list')

    def sigterm_drain(self):
        section('SIGTERM: the graceful drain')
        say('On SIGTERM the agent stops consuming topic compute at once (no '
            'new work), lets work in flight finish on compute-alt, and '
            'exits as soon as nothing is left, well before '
            'graceful_shutdown_timeout when there is little to do.')
        print(f'\n  $ kill -TERM {self.agent.process.pid}', flush=True)
        log_size = os.path.getsize(self.log_file)
        status, seconds, signalled = self.agent.stop()
        say('Notifications the agent sent, as systemd would see them:')
        notes = self.agent.notifications_since(signalled)
        for at, fields in notes:
            print(f'    +{at - signalled:.3f} s  {format_fields(fields)}')
        say(f'What it logged meanwhile ({self.log_file}):')
        with open(self.log_file, errors='replace') as log:
            log.seek(log_size)
            show_output(log.read())
        check(any(f.get('STOPPING') == '1' for _, f in notes),
              'no STOPPING=1 notification after SIGTERM')
        check(status == 0, f'the agent exited with status {status}')
        ok(f'exited with status 0, {seconds:.2f} s after SIGTERM')
        self.figures.append(('SIGTERM to exit (idle drain)',
                             f'{seconds:.2f} s, exit status {status}'))

    def queue_while_stopped(self):
        section('A request sent while the agent is down waits on the broker')
        say(f'Topic compute stopped at SIGTERM; anything sent to it from '
            f'then until the next start stays in queue {PRIMARY_QUEUE}. A '
            f'CLI call would wait for an answer that cannot come yet, so '
            f'this script casts the request (fire and forget), as a '
            f'control plane does, with the raw client of '
            f'tests/fixtures/rpc.py.')
        queued_uuid = str(uuid.uuid4())
        print(f'\n  cast build_and_run_instance(name=demo-2, '
              f'uuid={queued_uuid}) to topic compute, server {HOST}',
              flush=True)
        self.rpc.cast('build_and_run_instance', instance={
            'uuid': queued_uuid, 'name': 'demo-2', 'vcpus': 1,
            'memory_mb': 128, 'image': {'id': 'none', 'properties': {}}})
        depth = self._wait_for_depth(1)
        ok(f'the broker (rabbitmqctl list_queues) counts {depth} message '
           f'in {PRIMARY_QUEUE}: the request is kept for the agent')
        return queued_uuid

    def _wait_for_depth(self, expected, timeout=10):
        # The broker counts a published message a moment after the cast
        # returns; poll briefly rather than race it.
        deadline = time.monotonic() + timeout
        while True:
            depth = self.broker.queue_depth(PRIMARY_QUEUE)
            if depth == expected or time.monotonic() > deadline:
                check(depth == expected,
                      f'{PRIMARY_QUEUE} holds {depth} message(s), expected '
                      f'{expected}')
                return depth
            time.sleep(0.2)

    def restart_and_build(self, queued_uuid):
        section('Restart the agent: it takes the queued request')
        print(f'\n  $ {shlex.join(self.agent.command)} &', flush=True)
        self.agent.start()
        seconds, _ = self.agent.wait_ready()
        ok(f'READY=1 {seconds:.2f} s after it was started')
        self.figures.append(('agent restart to READY=1', f'{seconds:.2f} s'))
        record = self._wait_until_built(queued_uuid)
        check(record['name'] == 'demo-2', f'queued instance is named '
                                          f'{record["name"]}')
        self.cli('list')
        self._wait_for_depth(0)
        ok(f'demo-2 was built from the queued request; {PRIMARY_QUEUE} is '
           f'empty')

    def _wait_until_built(self, instance_uuid, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            records = {r['uuid']: r for r in
                       self.rpc.call('list_instances')}
            record = records.get(instance_uuid)
            if record and record['vm_state'] == 'active':
                return record
            check(time.monotonic() < deadline,
                  f'the queued instance is not active {timeout} s after '
                  f'the restart: {record}')
            time.sleep(0.2)

    def final_stop(self):
        section('Stop the agent')
        print(f'\n  $ kill -TERM {self.agent.process.pid}', flush=True)
        status, seconds, _ = self.agent.stop()
        check(status == 0, f'the agent exited with status {status}')
        ok(f'exited with status 0, {seconds:.2f} s after SIGTERM')

    def print_figures(self):
        section('Measured')
        for what, value in self.figures:
            print(f'  {what:<30} {value}')

    def report_failure(self):
        """What an operator needs to see before the temp dir goes away."""
        for name, path in (('agent log', self.log_file),
                           ('agent stdout/stderr',
                            self.agent and self.agent.output_file)):
            if not path or not os.path.exists(path):
                continue
            with open(path, errors='replace') as log:
                tail = log.read().splitlines()[-LOG_TAIL_LINES:]
            if not tail:
                continue
            print(f'\n--- last {len(tail)} lines of the {name} ({path}) ---',
                  file=sys.stderr)
            print('\n'.join(tail), file=sys.stderr)

    def close(self):
        # Reverse order of start: the agent needs the broker to drain.
        if self.agent is not None:
            self.agent.close()
        if self.rpc is not None:
            self.rpc.cleanUp()
        if self.broker is not None:
            self.broker.stop()


def _interrupt_on_sigterm(signum, frame):
    # A SIGTERM (say, from a CI job's timeout) cleans up as Ctrl-C does.
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    work_dir = tempfile.mkdtemp(prefix='compute-agent-quickstart-')
    # oslo.messaging's own warnings (reconnects while the broker stops)
    # would interleave with the narration; they go to a file instead.
    logging.basicConfig(filename=os.path.join(work_dir, 'client.log'),
                        level=logging.WARNING)
    print('compute-agent quick start: one agent on libvirt\'s test driver, '
          'driven by\ncompute-agent-client over a private RabbitMQ.\n'
          f'Temporary files: {work_dir} (removed at the end)')
    walkthrough = Walkthrough(work_dir)
    succeeded = False
    try:
        walkthrough.run()
        succeeded = True
    except StepFailed as failure:
        print(f'\nFAILED: {failure}', file=sys.stderr)
        walkthrough.report_failure()
    except KeyboardInterrupt:
        print('\nInterrupted; cleaning up.', file=sys.stderr)
    except Exception:
        # Not a check that failed but a step that broke (the broker would
        # not start, an RPC call raised): the traceback says where.
        print('\nFAILED with an unexpected error:', file=sys.stderr)
        traceback.print_exc()
        walkthrough.report_failure()
    finally:
        # A second Ctrl-C must not leave a broker or an agent behind; every
        # wait in close() is bounded.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        walkthrough.close()
        shutil.rmtree(work_dir, ignore_errors=True)
    if succeeded:
        print('\nAll steps behaved as described. Every option the agent '
              'takes is explained in\netc/compute-agent.conf.sample.')
        return 0
    return 1


if __name__ == '__main__':
    sys.exit(main())
