"""The concurrency mode: native threads (the default) or eventlet.

This is the one module that knows which mode the process runs in; the
rest of the agent asks it for what differs and never for the mode.

``COMPUTE_AGENT_CONCURRENCY`` (``threading`` or ``eventlet``) chooses,
read by ``select_from_environment()`` before anything imports
oslo.service or oslo.messaging (compute_agent/cmd/__init__.py for the
programs, tests/__init__.py for the tests). It is an environment
variable because it must act before the configuration is parsed.

In eventlet mode the process is monkey-patched at once, so ``threading``,
``time.sleep``, ``select`` and sockets become green: the agent's own
threads, events and locks are green threads and green primitives without
asking. What monkey-patching cannot make cooperative is provided here:

* ``run_blocking`` and ``blocking_proxy``: a C call that blocks (libvirt,
  SQLite) runs on eventlet's pool of native threads, so the hub that runs
  every green thread is never stalled; in threading mode it is a plain
  call.
* ``spawn_native``, ``native_lock``, ``native_sleep``: a real OS thread
  for a loop that lives in C (libvirt's event loop), and the lock and
  sleep such a thread may use.
* ``Handoff``: items put by a native thread, taken by a worker; in
  eventlet mode a pipe wakes the hub, as a green primitive set from a
  foreign thread would not.
* ``serial_proxy``: an object whose blocking calls must also run one at
  a time (the SQLite database).
* ``rpc_executor`` and ``launch``: oslo.messaging's executor and how the
  service is started and waited on.
"""

import collections
import functools
import logging
import os
import signal
import threading
import warnings

ENVIRONMENT_VARIABLE = 'COMPUTE_AGENT_CONCURRENCY'
THREADING = 'threading'
EVENTLET = 'eventlet'
MODES = (THREADING, EVENTLET)

LOG = logging.getLogger(__name__)

# Set once by select_from_environment(); a process that never selected
# (a tool importing a module or two) runs unpatched, as in threading mode.
_mode = None


class ModeError(ValueError):
    """COMPUTE_AGENT_CONCURRENCY names no mode."""


def mode_from_environment(environ=None):
    """The mode the environment asks for; ModeError for anything else."""
    environ = os.environ if environ is None else environ
    value = environ.get(ENVIRONMENT_VARIABLE, '').strip()
    if not value:
        return THREADING
    if value not in MODES:
        raise ModeError(f'{ENVIRONMENT_VARIABLE}={value!r} is not a '
                        f'concurrency mode: use {THREADING} (the default) '
                        f'or {EVENTLET}')
    return value


def select_from_environment(environ=None):
    """Put the process in the mode the environment asks for: in eventlet
    mode monkey-patch it, then pick oslo.service's backend of the same
    name. Run before oslo.service or oslo.messaging is imported; again
    with the same mode it changes nothing. Returns the mode."""
    global _mode
    wanted = mode_from_environment(environ)
    # futurist imports eventlet whenever it is installed, and eventlet
    # warns on import that it is deprecated, in both modes. In threading
    # mode it is never used; in eventlet mode it was chosen knowingly (the
    # operator guide says eventlet is in maintenance upstream) and the
    # start log line names the mode. Either way the notice is noise.
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    if _mode is not None:
        if wanted != _mode:
            raise ModeError(f'the process already runs in {_mode} mode')
        return _mode
    if wanted == EVENTLET:
        import eventlet
        eventlet.monkey_patch()
    from oslo_service import backend
    backend.init_backend(backend.BackendType(wanted))
    _mode = wanted
    return _mode


def mode():
    """'threading' or 'eventlet', for the status and the start log line
    only: behaviour differs through the functions below, not by asking."""
    return _mode or THREADING


def _green():
    return _mode == EVENTLET


def rpc_executor():
    """oslo.messaging's executor for the RPC servers."""
    return EVENTLET if _green() else THREADING


def run_blocking(function, *args, **kwargs):
    """function(*args, **kwargs), off the hub in eventlet mode."""
    if _green():
        from eventlet import tpool
        return tpool.execute(function, *args, **kwargs)
    return function(*args, **kwargs)


def blocking_proxy(target, autowrap=()):
    """target itself in threading mode; in eventlet mode a proxy whose
    every method call runs through run_blocking, and whose results of the
    types in autowrap (e.g. a domain a connection returns) are proxied
    the same way."""
    if _green():
        from eventlet import tpool
        return tpool.Proxy(target, autowrap=tuple(autowrap))
    return target


def _native(module):
    if _green():
        from eventlet import patcher
        return patcher.original(module)
    return __import__(module)


def spawn_native(target, name):
    """Start target() on a daemon OS thread (never a green thread), for
    a loop that blocks in C. It may use only native_lock, native_sleep
    and Handoff.put of this module's primitives."""
    thread = _native('threading').Thread(target=target, name=name,
                                         daemon=True)
    thread.start()
    return thread


def native_lock():
    """A lock shared with a native thread; held only briefly by green
    threads, which it blocks, hub and all, while contended."""
    return _native('threading').Lock()


def native_sleep(seconds):
    _native('time').sleep(seconds)


def spawn(target, name, *args):
    """Start target(*args) on a daemon worker: a thread, or a green
    thread in eventlet mode. Returns it (join(), is_alive())."""
    worker = threading.Thread(target=target, args=args, name=name,
                              daemon=True)
    worker.start()
    return worker


class Handoff:
    """Items put by any thread, native ones included (put never blocks),
    taken in order by one consumer (get blocks until there is one)."""

    def __init__(self):
        self._impl = _PipeHandoff() if _green() else _QueueHandoff()

    def put(self, item):
        self._impl.put(item)

    def get(self):
        return self._impl.get()


class _QueueHandoff:
    def __init__(self):
        import queue
        self._queue = queue.SimpleQueue()

    def put(self, item):
        self._queue.put(item)

    def get(self):
        return self._queue.get()


class _PipeHandoff:
    """The producer appends, then writes a byte; the consumer waits on
    the pipe through the hub whenever it finds the deque empty. A byte
    is written only after its item, so a wake-up is never lost."""

    def __init__(self):
        self._os = _native('os')
        self._items = collections.deque()   # append/popleft are atomic
        self._read_fd, self._write_fd = self._os.pipe()
        self._os.set_blocking(self._read_fd, False)
        self._os.set_blocking(self._write_fd, False)

    def put(self, item):
        self._items.append(item)
        try:
            self._os.write(self._write_fd, b'.')
        except BlockingIOError:
            pass   # the pipe is full: the consumer is due to wake anyway

    def get(self):
        from eventlet import hubs
        while True:
            try:
                return self._items.popleft()
            except IndexError:
                pass
            hubs.trampoline(self._read_fd, read=True)
            try:
                self._os.read(self._read_fd, 4096)
            except BlockingIOError:
                pass


def serial_proxy(target):
    """target itself in threading mode; in eventlet mode a proxy whose
    method calls run one at a time through run_blocking (SQLite through
    SQLAlchemy: its pool's locks are green there, and green locks must
    never be contended from native threads)."""
    return _SerialProxy(target) if _green() else target


class _SerialProxy:
    """``_lock`` (native) keeps the calls on the pool's threads one at a
    time."""

    def __init__(self, target):
        self._target = target
        self._lock = native_lock()

    def __getattr__(self, name):
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute
        return functools.partial(run_blocking, self._run_alone, attribute)

    def _run_alone(self, method, *args, **kwargs):
        with self._lock:
            return method(*args, **kwargs)


def launch(conf, service):
    """Run service.start() and then service.wait(), on this thread, with
    SIGINT and SIGALRM ending the process at once (status 1).

    Threading mode hands this to oslo.service's launcher (one worker, no
    fork). Its eventlet twin would start the service on a green thread of
    its own and tell systemd READY=1 (removing NOTIFY_SOCKET) before the
    service is ready, so in eventlet mode the same steps are taken here.
    """
    if not _green():
        from oslo_service import service as oslo_service
        oslo_service.launch(conf, service, workers=1, no_fork=True)
        return
    signal.signal(signal.SIGINT, _exit_at_once)
    signal.signal(signal.SIGALRM, _exit_at_once)
    service.start()
    service.wait()


def _exit_at_once(signum, _frame):
    LOG.info('%s: exiting at once', signal.Signals(signum).name)
    os._exit(1)
