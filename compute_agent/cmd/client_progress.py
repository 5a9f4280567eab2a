"""Progress of clean power-offs while compute-agent-client waits.

While a call that powers a guest off is waiting for the agent's answer,
a background thread asks the agent for its in-flight work about once a
second and keeps one line on stderr up to date with this client's own
requests (matched by request id) whose clean power-off is still waiting.
"""

import os
import sys
import threading

import oslo_messaging

from compute_agent import rpcapi
from compute_agent.cmd import client_format

POLL_INTERVAL = 1.0
# A status poll must not hold the CLI up once the real call has answered:
# stop() waits for the poll under way.
POLL_RPC_TIMEOUT = 2
DEFAULT_COLUMNS = 80
ERASE_LINE = '\r\x1b[K'


class StatusLine:
    """One line on a terminal stream, rewritten in place."""

    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()
        self._shown = False
        self._closed = False

    def _columns(self):
        try:
            return os.get_terminal_size(self._stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            return DEFAULT_COLUMNS

    def _erase(self):
        if self._shown:
            self._stream.write(ERASE_LINE)
            self._stream.flush()
            self._shown = False

    def show(self, text):
        """Replace the line with text ('' clears it). Cut to the width of
        the terminal: a wrapped line could not be rewritten in place."""
        with self._lock:
            if self._closed:
                return
            if not text:
                self._erase()
                return
            self._stream.write('\r' + text[:self._columns() - 1] + '\x1b[K')
            self._stream.flush()
            self._shown = True

    def print_above(self, text, stream):
        """Print a line of other output without tearing the status line;
        the next show() draws it again."""
        with self._lock:
            self._erase()
            print(text, file=stream, flush=True)

    def close(self):
        """Clear the line; later show() calls write nothing."""
        with self._lock:
            self._erase()
            self._closed = True


class PowerOffProgress:
    """Polls get_service_status on topic compute-alt (it answers even
    while the agent drains) in a background thread and shows the waiting
    clean power-offs of the watched requests on a StatusLine.

    Use as a context manager around the calls being waited on.
    """

    def __init__(self, api, host, line, interval=None):
        self._api = api
        self._host = host
        self._line = line
        self._interval = POLL_INTERVAL if interval is None else interval
        self._lock = threading.Lock()
        self._names = {}  # watched request id -> guest name, None: unknown
        self._tried = {}  # request id -> clean method last seen waiting
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='power-off-progress')

    def watch(self, request_id, name=None):
        """Show request_id's power-off; name None: look it up when seen."""
        with self._lock:
            self._names[request_id] = name

    def forget(self, request_id):
        with self._lock:
            self._names.pop(request_id, None)

    def tried_method(self, request_id):
        """The clean method request_id was last seen waiting on, or None.
        """
        with self._lock:
            return self._tried.get(request_id)

    def print_above(self, text):
        self._line.print_above(text, sys.stdout)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def stop(self):
        """End the polling and clear the line; returns once the thread
        has ended, so nothing uses the transport after this."""
        self._stopped.set()
        self._thread.join()
        self._line.close()

    def _run(self):
        while not self._stopped.wait(self._interval):
            self.poll()

    def poll(self):
        """One status request; show what the watched requests wait for."""
        try:
            status = self._api.get_service_status(
                rpcapi.new_context(), self._host, alt=True,
                timeout=POLL_RPC_TIMEOUT)
        except oslo_messaging.MessagingException:
            # Progress is a courtesy: a status poll that fails (agent
            # busy, bus hiccup) must not disturb the call waited on.
            return
        waiting = []
        for entry in status['in_flight']:
            request_id, power_off = entry['request_id'], entry.get('power_off')
            with self._lock:
                if not power_off or request_id not in self._names:
                    continue
                name = self._names[request_id]
                if power_off['method']:
                    self._tried[request_id] = power_off['method']
            if name is None:
                name = self._guest_name(entry['instance_uuid'])
                with self._lock:
                    if request_id in self._names:
                        self._names[request_id] = name
            waiting.append((name, power_off))
        self._line.show(client_format.progress(waiting))

    def _guest_name(self, instance_uuid):
        try:
            return self._api.get_instance(
                rpcapi.new_context(), self._host, instance_uuid,
                timeout=POLL_RPC_TIMEOUT)['name']
        except oslo_messaging.MessagingException:
            return instance_uuid
