"""sd_notify: tell the service manager about readiness and the drain.

A no-op unless systemd (or a test harness) set NOTIFY_SOCKET.
"""

import os
import socket


def notify(**fields):
    """Send e.g. notify(READY=1, STATUS='serving') to $NOTIFY_SOCKET."""
    address = os.environ.get('NOTIFY_SOCKET')
    if not address:
        return False
    if address.startswith('@'):
        address = '\0' + address[1:]
    payload = '\n'.join(f'{key}={value}' for key, value in fields.items())
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(payload.encode(), address)
        except OSError:
            return False
    return True
