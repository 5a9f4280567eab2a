"""How compute_agent.rpcapi reaches a host: the version it may send, the
topic, the reply timeout, and the oslo.messaging client itself.

The versions, their history and what each agent's SERVICE_VERSION speaks
are compute_agent.rpcapi's; VersionedClients is handed them.

Build the transport after compute_agent.rpc.set_defaults(), so that the
exchange defaults to the agent's (``compute_agent``) unless
``control_exchange`` says otherwise.

Requests are published with the broker's mandatory flag: a request to a
host that has never run an agent on this bus fails at once with
MessageUndeliverable instead of waiting out its timeout.
"""

import logging
import threading
import time
import uuid

import oslo_messaging

from compute_agent import rpc

LOG = logging.getLogger(__name__)

TOPIC = rpc.TOPIC
ALT_TOPIC = rpc.ALT_TOPIC
ALT_TOPIC_MIN_VERSION = '1.1'
AUTO_PIN_CACHE_SECONDS = 300
# How long auto sends to a host that did not answer before asking again.
AUTO_RETRY_SECONDS = 30
# How long [upgrade_levels] compute=auto waits for an agent's version.
DISCOVERY_TIMEOUT = 10
# How long a request waits for another's question to the same host: the
# question may be asked on both topics.
QUESTION_WAIT = 2 * DISCOVERY_TIMEOUT + 5
# A power operation may take the whole shutdown timeout and then some.
POWER_CALL_MARGIN = 60
DEFAULT_POWER_TIMEOUT = 300


def version_at_least(version, minimum):
    """Whether version ('major.minor') is minimum or newer."""
    def parts(text):
        return tuple(int(part) for part in text.split('.'))
    return parts(version) >= parts(minimum)


def new_context():
    return {'request_id': f'req-{uuid.uuid4()}'}


def power_timeout(shutdown_timeout):
    """The reply timeout of a call that may wait out a clean power-off of
    shutdown_timeout seconds (None: the agent's default)."""
    base = DEFAULT_POWER_TIMEOUT if shutdown_timeout is None \
        else shutdown_timeout
    return base + POWER_CALL_MARGIN


class _Question:
    """One host's version being asked by one request for all of them."""

    def __init__(self, cap):
        self.cap = cap   # set by the asker before answered
        self.answered = threading.Event()


class VersionedClients:
    """Makes the client for each request, capped at what its host speaks.

    Owns what ``[upgrade_levels] compute=auto`` learnt of each host (the
    version it last answered, and when it last left the question
    unanswered), the questions in flight, and the lock guarding all
    three.
    """

    def __init__(self, transport, newest_version, rpc_for_service_version,
                 version_pin=None, retry=None, clock=time.monotonic):
        """:param newest_version: the newest version the caller sends.
        :param rpc_for_service_version: SERVICE_VERSION -> the version an
            agent running it speaks, for version_pin 'auto'.
        :param version_pin: None (send the newest), a version, or 'auto'
            (ask each host for its SERVICE_VERSION).
        :param retry: connection attempts per request before giving up
            (None: keep trying, as a service should; the CLI sets a few).
        """
        self._transport = transport
        self._newest = newest_version
        self._rpc_for_service_version = rpc_for_service_version
        self._pin = version_pin
        self._retry = retry
        self._clock = clock
        self._auto_caps = {}     # host -> (version, fresh until)
        self._unanswered = {}    # host -> when it last left auto unanswered
        self._questions = {}     # host -> the _Question in flight
        self._auto_lock = threading.Lock()

    def version_cap(self, host, needed='1.0'):
        """The newest version this client may send to host.

        :param needed: the version of the request at hand, which is the
            cap when auto has never had an answer from host: every agent
            that has the method in that form accepts it.
        """
        if not self._pin:
            return self._newest
        if self._pin != 'auto':
            return self._pin
        cap = self._auto_cap(host)
        return needed if cap is None else cap

    def _auto_cap(self, host):
        """The version host's agent speaks by its last answer (None: it
        never answered), asked again once that answer is older than
        AUTO_PIN_CACHE_SECONDS.

        A host that leaves the question unanswered is stopped or
        restarting, as in a rolling restart: its requests are sent all the
        same, to wait on the broker, at the version it last spoke or at
        their own. It is not asked again for AUTO_RETRY_SECONDS, so that
        it does not cost each of its requests the discovery timeout.
        Requests that find the question already asked wait for its answer
        instead of asking again.
        """
        now = self._clock()
        with self._auto_lock:
            cap, fresh_until = self._auto_caps.get(host, (None, now))
            unanswered_at = self._unanswered.get(host)
            if now < fresh_until or (
                    unanswered_at is not None and
                    now < unanswered_at + AUTO_RETRY_SECONDS):
                return cap
            question = self._questions.get(host)
            asking = question is None
            if asking:
                question = self._questions[host] = _Question(cap)
        if not asking:
            # The asker's own timeouts end its question first.
            question.answered.wait(QUESTION_WAIT)
            return question.cap
        try:
            question.cap = self._ask(host, cap)
        finally:
            with self._auto_lock:
                del self._questions[host]
            question.answered.set()
        return question.cap

    def _ask(self, host, cap):
        """Ask host its version: the version to send it (cap, the last
        known, when it does not answer)."""
        try:
            service_version = self._discover_service_version(host)
        except oslo_messaging.MessagingTimeout:
            with self._auto_lock:
                first = host not in self._unanswered
                self._unanswered[host] = self._clock()
            if first and cap is None:
                LOG.warning('Host %s did not say which compute RPC version '
                            'it speaks (unknown): sending each request at '
                            'its own version until it answers', host)
            elif first:
                LOG.info('Host %s did not say which compute RPC version it '
                         'speaks: sending at %s, its last known', host, cap)
            return cap
        # An agent newer than this client is sent this client's newest.
        cap = self._rpc_for_service_version.get(service_version,
                                                self._newest)
        with self._auto_lock:
            self._auto_caps[host] = (cap, self._clock() +
                                     AUTO_PIN_CACHE_SECONDS)
            self._unanswered.pop(host, None)
        return cap

    def _discover_service_version(self, host):
        """Ask host which SERVICE_VERSION it runs, on compute-alt: it still
        answers there while it drains. A host too old to have that queue
        makes the broker refuse at once, and is asked on compute. compute
        is not asked when compute-alt is silent: the agent stops compute
        first, so it would only add a second timeout."""
        def ask(topic):
            return self._client(host, topic, '1.0', DISCOVERY_TIMEOUT).call(
                new_context(), 'get_service_status')['service_version']
        try:
            return ask(ALT_TOPIC)
        except oslo_messaging.MessageUndeliverable:
            return ask(TOPIC)

    def _client(self, host, topic, version, timeout=None):
        # No exchange here: the transport's, i.e. [DEFAULT] control_exchange,
        # which is what the agent listens on.
        target = oslo_messaging.Target(topic=topic, server=host,
                                       version=version)
        return oslo_messaging.get_rpc_client(
            self._transport, target, timeout=timeout, retry=self._retry,
            transport_options=oslo_messaging.TransportOptions(
                at_least_once=True))

    @staticmethod
    def _check_cap(version, cap):
        if not version_at_least(cap, version):
            raise oslo_messaging.RPCVersionCapError(version=version,
                                                    version_cap=cap)

    def prepare(self, host, version, timeout=None):
        """A client for new work: topic compute."""
        self._check_cap(version, self.version_cap(host, version))
        return self._client(host, TOPIC, version, timeout)

    def prepare_for_alt_rpcserver(self, host, version, timeout=None):
        """A client for work that continues something already started:
        topic compute-alt, or compute when the peer predates it.

        :param version: the version that introduced the method's current
            arguments; a peer capped below it cannot take the call at all.
        """
        cap = self.version_cap(host, version)
        self._check_cap(version, cap)
        if version_at_least(cap, ALT_TOPIC_MIN_VERSION):
            return self._client(host, ALT_TOPIC, version, timeout)
        LOG.info('Host %s is sent compute RPC %s, older than %s: sending '
                 'to topic %s instead of %s', host, cap,
                 ALT_TOPIC_MIN_VERSION, TOPIC, ALT_TOPIC)
        return self._client(host, TOPIC, version, timeout)

    def prepare_power(self, host, version, shutdown_timeout, timeout):
        """A client for a call that may wait out a clean power-off: its
        reply timeout covers the guest's shutdown timeout."""
        return self.prepare(
            host, version, timeout or power_timeout(shutdown_timeout))
