"""The baseline server: bare oslo.messaging, nothing of compute-agent.

Run as ``python -m tools.bench.baselines.bare_server --config-file FILE``
(the config an agent fixture writes: ``host`` and ``transport_url`` in
[DEFAULT]; the rest is ignored). It listens where an agent would
(exchange ``compute_agent``, topic ``compute``, server ``host``, version
1.1), so the bench's client calls both in the same way, and serves:

* ``get_service_status``: the trivial method, a constant reply;
* ``hold(seconds)``: an operation that takes time, to measure the drain.
  It sends ``STATUS=holding`` on ``NOTIFY_SOCKET`` when it starts.

It sends ``READY=1`` once the server has started, and on SIGTERM does
what oslo.messaging offers for a graceful stop, ``stop()`` then
``wait()``, and exits 0.
"""

import os
import signal
import socket
import sys
import time

from oslo_config import cfg
import oslo_messaging

EXCHANGE = 'compute_agent'
TOPIC = 'compute'
VERSION = '1.1'


def sd_notify(message):
    path = os.environ.get('NOTIFY_SOCKET')
    if path:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), path)


class Endpoint:
    target = oslo_messaging.Target(version=VERSION)

    def get_service_status(self, ctxt):
        return {'state': 'running'}

    def hold(self, ctxt, seconds):
        sd_notify('STATUS=holding')
        time.sleep(seconds)
        return {'held': seconds}


def main(argv):
    # Blocked before any thread starts (threads inherit the mask), so
    # that sigwait below, not a handler, takes them.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    conf = cfg.CONF
    conf.register_opts([cfg.StrOpt('host')])
    conf(argv, project='bare-server')
    transport = oslo_messaging.get_rpc_transport(conf)
    server = oslo_messaging.get_rpc_server(
        transport, oslo_messaging.Target(exchange=EXCHANGE, topic=TOPIC,
                                         server=conf.host),
        [Endpoint()], executor='threading')
    server.start()
    sd_notify('READY=1')
    signal.sigwait(stop_signals)
    sd_notify('STOPPING=1')
    server.stop()
    server.wait()
    transport.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
