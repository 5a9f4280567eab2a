"""compute_agent/concurrency.py: choosing the mode, and what differs by
mode. These run in whichever mode the suite runs in (tox -e py3 or
py3-eventlet), so each mode's half is exercised by its own run."""

import ast
import os
import subprocess
import sys
import threading

import testtools

from compute_agent import concurrency

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), '..', '..'))
PACKAGE = os.path.join(ROOT, 'compute_agent')
DEADLINE = 30
# The only modules that may know the mode: the module itself, and the
# programs' package, which selects it before anything else is imported.
MAY_KNOW_THE_MODE = {'compute_agent/concurrency.py',
                     'compute_agent/cmd/__init__.py'}
# What concurrency.py keeps to itself.
MODE_NAMES = {'EVENTLET', 'THREADING', 'ENVIRONMENT_VARIABLE', '_green',
              '_mode', 'select_from_environment', 'mode_from_environment'}


class ModeFromEnvironmentTest(testtools.TestCase):
    def test_threading_is_the_default(self):
        self.assertEqual('threading', concurrency.mode_from_environment({}))
        self.assertEqual('threading', concurrency.mode_from_environment(
            {concurrency.ENVIRONMENT_VARIABLE: ''}))

    def test_either_mode_by_name(self):
        for name in ('threading', 'eventlet'):
            self.assertEqual(name, concurrency.mode_from_environment(
                {concurrency.ENVIRONMENT_VARIABLE: name}))

    def test_anything_else_is_refused_with_the_choices(self):
        error = self.assertRaises(
            concurrency.ModeError, concurrency.mode_from_environment,
            {concurrency.ENVIRONMENT_VARIABLE: 'asyncio'})
        self.assertIn("COMPUTE_AGENT_CONCURRENCY='asyncio'", str(error))
        self.assertIn('threading', str(error))
        self.assertIn('eventlet', str(error))

    def test_the_suite_runs_in_the_mode_its_environment_names(self):
        self.assertEqual(concurrency.mode_from_environment(),
                         concurrency.mode())

    def test_a_second_selection_cannot_change_the_mode(self):
        other = ('eventlet' if concurrency.mode() == 'threading'
                 else 'threading')
        self.assertEqual(concurrency.mode(),
                         concurrency.select_from_environment(
                             {concurrency.ENVIRONMENT_VARIABLE:
                              concurrency.mode()}))
        self.assertRaises(concurrency.ModeError,
                          concurrency.select_from_environment,
                          {concurrency.ENVIRONMENT_VARIABLE: other})

    def test_the_programs_refuse_to_start_in_an_unknown_mode(self):
        environment = dict(os.environ)
        environment[concurrency.ENVIRONMENT_VARIABLE] = 'gevent'
        result = subprocess.run(
            [sys.executable, '-c', 'import compute_agent.cmd.agent'],
            env=environment, cwd=ROOT, capture_output=True, text=True,
            timeout=DEADLINE)
        self.assertEqual(1, result.returncode, result.stderr)
        self.assertIn("compute-agent cannot start: "
                      "COMPUTE_AGENT_CONCURRENCY='gevent'", result.stderr)
        self.assertNotIn('Traceback', result.stderr)


class PrimitivesTest(testtools.TestCase):
    def test_run_blocking_returns_and_raises_as_a_call_would(self):
        self.assertEqual(5, concurrency.run_blocking(int, '5'))
        self.assertRaises(ValueError, concurrency.run_blocking, int, 'x')

    def test_a_blocking_proxy_forwards_calls(self):
        proxy = concurrency.blocking_proxy({'a': 1})
        self.assertEqual(1, proxy.get('a'))

    def test_a_serial_proxy_forwards_calls_and_attributes(self):
        class Store:
            size = 3

            def double(self, value):
                return value * 2

        proxy = concurrency.serial_proxy(Store())
        self.assertEqual(8, proxy.double(4))
        self.assertEqual(3, proxy.size)

    def _blocked_until_a_worker_runs(self, run):
        """run(blocking) where blocking() waits in a native lock for a
        worker to release it, as a libvirt or SQLite call blocks in C:
        True unless the call kept the workers from running (a call on
        the hub in eventlet mode would wait out the deadline)."""
        lock = concurrency.native_lock()
        lock.acquire()
        started = concurrency.Handoff()

        def blocking():
            started.put('blocking')
            return lock.acquire(timeout=DEADLINE)

        def release():
            started.get()
            lock.release()

        concurrency.spawn(release, 'releaser')
        return run(blocking)

    def test_run_blocking_leaves_the_workers_running(self):
        self.assertTrue(self._blocked_until_a_worker_runs(
            concurrency.run_blocking))

    def test_proxied_calls_leave_the_workers_running(self):
        class Blocking:
            def call(self, blocking):
                return blocking()

        for proxy in (concurrency.blocking_proxy(Blocking()),
                      concurrency.serial_proxy(Blocking())):
            self.assertTrue(self._blocked_until_a_worker_runs(proxy.call))

    def test_a_native_thread_hands_items_to_a_worker(self):
        handoff = concurrency.Handoff()
        taken = []
        done = threading.Event()

        def take():
            taken.extend(handoff.get() for _ in range(3))
            done.set()

        concurrency.spawn(take, 'taker')

        def produce():
            for item in ('a', ('b', 1), 'c'):
                handoff.put(item)

        concurrency.spawn_native(produce, 'producer')
        self.assertTrue(done.wait(DEADLINE))
        self.assertEqual(['a', ('b', 1), 'c'], taken)

    def test_a_native_lock_is_shared_with_a_native_thread(self):
        lock = concurrency.native_lock()
        entered = []
        with lock:
            thread = concurrency.spawn_native(
                lambda: entered.append(lock.acquire(timeout=DEADLINE)),
                'locker')
        thread.join(DEADLINE)
        self.assertEqual([True], entered)

    def test_a_worker_runs_its_target_with_arguments(self):
        seen = []
        worker = concurrency.spawn(seen.append, 'worker', 'x')
        worker.join(DEADLINE)
        self.assertFalse(worker.is_alive())
        self.assertEqual(['x'], seen)

    def test_the_rpc_executor_is_named_after_the_mode(self):
        self.assertEqual(concurrency.mode(), concurrency.rpc_executor())


def _python_files():
    for directory, _dirs, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(directory, name)
                yield os.path.relpath(path, ROOT).replace(os.sep, '/'), path


def _docstrings(tree):
    """The docstring nodes of the module, its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and \
                    isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _mode_knowledge(tree):
    """Lines where the code touches eventlet, the mode's variable or
    concurrency's private notion of the mode, or compares the mode."""
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or '']
        else:
            names = []
        if any(name.split('.')[0] == 'eventlet' for name in names):
            yield node.lineno, 'imports eventlet'
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings and (
                    'eventlet' in node.value.lower() or
                    concurrency.ENVIRONMENT_VARIABLE in node.value):
            yield node.lineno, f'names the mode: {node.value!r}'
        if isinstance(node, ast.Attribute) and \
                isinstance(node.value, ast.Name) and \
                node.value.id == 'concurrency' and node.attr in MODE_NAMES:
            yield node.lineno, f'uses concurrency.{node.attr}'
        if isinstance(node, (ast.Compare, ast.If, ast.IfExp, ast.BoolOp,
                             ast.Match)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Attribute) and \
                        inner.attr in ('mode', 'rpc_executor') and \
                        isinstance(inner.value, ast.Name) and \
                        inner.value.id == 'concurrency':
                    yield node.lineno, 'branches on the mode'


class OneModuleKnowsTheModeTest(testtools.TestCase):
    def test_the_check_finds_what_it_looks_for(self):
        source = ('import eventlet\n'
                  'x = "COMPUTE_AGENT_CONCURRENCY"\n'
                  'if concurrency.mode() == "threading":\n'
                  '    y = concurrency.EVENTLET\n')
        self.assertEqual([1, 2, 3, 4], sorted(
            {line for line, _what in _mode_knowledge(ast.parse(source))}))

    def test_nothing_else_asks_which_mode_it_runs_in(self):
        found = []
        for relative, path in _python_files():
            if relative in MAY_KNOW_THE_MODE:
                continue
            with open(path, encoding='utf-8') as source:
                tree = ast.parse(source.read())
            found += [f'{relative}:{line}: {what}'
                      for line, what in _mode_knowledge(tree)]
        self.assertEqual([], found, 'only compute_agent/concurrency.py may '
                         'know the concurrency mode; ask it for what '
                         'differs instead')
