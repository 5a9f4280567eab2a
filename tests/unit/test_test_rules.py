"""The tests keep the project's rules on time, checked on their source.

- No ``time.sleep`` as synchronisation: a test waits for what it expects
  (tests.fixtures.polling.wait_for, an event, a join) with a deadline.
  Only the fixtures' own poll loops, each with its deadline, may sleep.
- No assertion on measured time: not on a real clock's reading (or a name
  computed from one, or an agent's exit_time and signal_time), and no
  ordering assertion (less, greater) on a duration the code reports
  (``seconds``, ``elapsed``). How fast something is belongs to
  tools/bench, which prints figures; exact values read from a simulated
  clock are fine.
"""

import ast
import os
import textwrap

from tests.unit import base

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Fixtures whose poll loops sleep between checks, each up to a deadline.
SLEEP_ALLOWED = {
    'fixtures/cgroups.py',
    'fixtures/polling.py',
    'fixtures/rabbitmq.py',
    'fixtures/rabbitmq_cluster.py',
    'fixtures/systemd.py',
    'realguest/libvirtd.py',
}
REAL_CLOCKS = {'monotonic', 'time', 'perf_counter', 'monotonic_ns',
               'time_ns', 'perf_counter_ns'}
# AgentProcess's time.monotonic() readings of a signal and of the exit.
MEASURED_ATTRIBUTES = {'exit_time', 'signal_time'}
# Durations the code under test reports.
DURATION_NAMES = {'seconds', 'elapsed'}
ORDERING_ASSERTIONS = {'assertLess', 'assertLessEqual', 'assertGreater',
                       'assertGreaterEqual'}
ORDERING_OPERATORS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
# Assertions that run a callable rather than compare values.
CALLING_ASSERTIONS = {'assertRaises', 'assertRaisesRegex', 'assertWarns',
                      'assertWarnsRegex', 'assertLogs', 'assertNoLogs'}


def violations(source, path='<test>', may_sleep=False):
    """'path:line: what' for each rule source breaks."""
    tree = ast.parse(source)
    time_names = _names_imported_from_time(tree)
    found = []
    for node in ast.walk(tree):
        if not may_sleep and _is_sleep(node, time_names):
            found.append((node.lineno, 'time.sleep() as synchronisation'))
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.extend(_timed_assertions(function, time_names))
    return [f'{path}:{line}: {what}' for line, what in sorted(set(found))]


def _names_imported_from_time(tree):
    """Local name -> name in time, for 'from time import ...'."""
    return {alias.asname or alias.name: alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == 'time'
            for alias in node.names}


def _time_function(node, time_names):
    """The name of the time function node calls, or None."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Attribute) and \
            isinstance(func.value, ast.Name) and func.value.id == 'time':
        return func.attr
    if isinstance(func, ast.Name):
        return time_names.get(func.id)
    return None


def _is_sleep(node, time_names):
    return _time_function(node, time_names) == 'sleep'


def _reads_real_time(node, time_names, measured_names):
    """Whether node's value is a real-clock reading or computed from one
    by arithmetic (not a value some other call returns)."""
    if _time_function(node, time_names) in REAL_CLOCKS:
        return True
    if isinstance(node, ast.Attribute):
        return node.attr in MEASURED_ATTRIBUTES
    if isinstance(node, ast.Name):
        return node.id in measured_names
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id in ('max', 'min', 'abs', 'round'):
        parts = node.args
    elif isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Compare,
                           ast.BoolOp)):
        parts = [child for child in ast.iter_child_nodes(node)
                 if isinstance(child, ast.expr)]
    else:
        return False
    return any(_reads_real_time(part, time_names, measured_names)
               for part in parts)


def _measured_names(function, time_names):
    """Names the function assigns from real-clock readings, directly or
    through each other."""
    measured = set()
    while True:
        before = len(measured)
        for node in ast.walk(function):
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) \
                    and node.value is not None and _reads_real_time(
                        node.value, time_names, measured):
                targets = node.targets if isinstance(node, ast.Assign) \
                    else [node.target]
                measured.update(target.id for target in targets
                                if isinstance(target, ast.Name))
        if len(measured) == before:
            return measured


def _mentions_a_duration(node):
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and child.id in DURATION_NAMES or \
                isinstance(child, ast.Attribute) and \
                child.attr in DURATION_NAMES or \
                isinstance(child, ast.Constant) and \
                child.value in DURATION_NAMES:
            return True
    return False


def _assertions(function):
    """(assertion node, its argument nodes, whether it orders values)."""
    for node in ast.walk(function):
        if isinstance(node, ast.Assert):
            yield node, [node.test], _has_ordering(node.test)
        elif isinstance(node, ast.Call) and \
                isinstance(node.func, ast.Attribute) and \
                node.func.attr.startswith('assert') and \
                node.func.attr not in CALLING_ASSERTIONS:
            arguments = node.args + [k.value for k in node.keywords]
            yield node, arguments, (
                node.func.attr in ORDERING_ASSERTIONS or
                any(_has_ordering(argument) for argument in arguments))


def _has_ordering(node):
    return any(isinstance(child, ast.Compare) and
               any(isinstance(op, ORDERING_OPERATORS) for op in child.ops)
               for child in ast.walk(node))


def _timed_assertions(function, time_names):
    measured = _measured_names(function, time_names)
    for node, arguments, orders in _assertions(function):
        for argument in arguments:
            if _reads_real_time(argument, time_names, measured):
                yield node.lineno, 'assertion on a real clock\'s reading'
            elif orders and _mentions_a_duration(argument):
                yield node.lineno, 'ordering assertion on a duration'


def _test_sources():
    for directory, _, files in os.walk(TESTS_DIR):
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(directory, name)
                yield os.path.relpath(path, TESTS_DIR), path


class TestsKeepTheRulesTest(base.TestCase):
    def test_no_sleeps_and_no_timed_assertions_in_tests(self):
        found = []
        for relative, path in _test_sources():
            with open(path) as source:
                found.extend(violations(
                    source.read(), f'tests/{relative}',
                    may_sleep=relative in SLEEP_ALLOWED))
        self.assertEqual([], found)

    def test_the_allowed_sleepers_exist(self):
        for relative in SLEEP_ALLOWED:
            self.assertTrue(os.path.exists(os.path.join(TESTS_DIR,
                                                        relative)), relative)


class CheckerTest(base.TestCase):
    """What the check finds, and what it leaves alone."""

    def found(self, source, **kwargs):
        return [line.split(': ', 1)[1] for line in
                violations(textwrap.dedent(source), **kwargs)]

    def test_sleeps(self):
        self.assertEqual(['time.sleep() as synchronisation'] * 2, self.found(
            '''
            import time
            from time import sleep as nap
            def test(self):
                time.sleep(0.3)
                nap(1)
                self.assertEqual([], self.calls)
            '''))
        self.assertEqual([], self.found('import time\ntime.sleep(1)\n',
                                        may_sleep=True))
        # An injected fake is not the real sleep.
        self.assertEqual([], self.found('''
            def test(self):
                self.time.sleep(5)
                sleep(5)
            '''))

    def test_assertions_on_real_clock_readings(self):
        self.assertEqual(["assertion on a real clock's reading"] * 4,
                         self.found('''
            import time
            def test(self):
                started = time.monotonic()
                took = time.monotonic() - started
                self.assertLess(took, 2)
                self.assertLess(time.monotonic(), self.deadline)
                self.assertLess(self.agent.exit_time - self.agent.signal_time,
                                2)
                assert self.agent.exit_time
            '''))

    def test_ordering_assertions_on_reported_durations(self):
        self.assertEqual(['ordering assertion on a duration'] * 4,
                         self.found('''
            def test(self):
                self.assertLess(result.seconds, 1.0)
                self.assertGreaterEqual(forced['seconds'], 5)
                self.assertTrue(elapsed < 3)
                assert record['elapsed'] <= 3
            '''))

    def test_what_is_left_alone(self):
        self.assertEqual([], self.found('''
            import time
            def test(self):
                deadline = time.monotonic() + 30
                wait_for(lambda: self.ready, 30, 'ready')
                self.assertTrue(self.done.wait(10))
                self.assertAlmostEqual(1.3, result.seconds)
                self.assertEqual(4.0, reports[0]['elapsed'])
                self.assertLess(len(text), 500)
                self.assertRaises(Error, ops.wait, time.monotonic() + 5)
                drained = ops.wait_until_drained(time.monotonic() + 30)
                self.assertTrue(drained)
                self.addDetail('seconds', text_content(f'{took:.3f}'))
            '''))
