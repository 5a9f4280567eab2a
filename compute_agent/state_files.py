"""Who may read what the agent keeps under state_path.

state_path holds the instance database, the guests' disk overlays and
console logs, and the image store's snapshots: data of the guests and of
whoever runs them. Only the agent may read or list it. QEMU is the one
exception: libvirt runs it as its own user (libvirt-qemu on Debian) and,
with its default dynamic_ownership, hands it each file of its guest, but
QEMU still opens that file by its path. So:

- files the agent (or a qemu-img it runs) creates are 0600,
- directories are 0711: others may pass through to a file whose name they
  know, but cannot list the directory or read what is in it.

Both come from the process umask, set before anything is created. What an
earlier version left more open (state_path itself, the database) is
tightened at start, with one warning for each, the first time.
"""

import logging
import os
import stat

LOG = logging.getLogger(__name__)

# Files 0600, directories 0711.
UMASK = 0o066
DIRECTORY_MODE = 0o711
DATABASE = 'agent.sqlite'
# Read and write bits of group and others.
_SHARED = 0o066


def prepare(state_path):
    """Set the umask and create or tighten state_path and the database
    files in it. Call before anything is written there."""
    os.umask(UMASK)
    os.makedirs(state_path, mode=DIRECTORY_MODE, exist_ok=True)
    _tighten(state_path)
    for name in os.listdir(state_path):
        # The database and its journal (agent.sqlite-journal).
        if name.startswith(DATABASE):
            _tighten(os.path.join(state_path, name))


def _tighten(path):
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if not mode & _SHARED:
        return
    tightened = mode & ~_SHARED
    os.chmod(path, tightened)
    LOG.warning('%s was readable or writable by other users (mode %04o); '
                'changed to %04o', path, mode, tightened)
