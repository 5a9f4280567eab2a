"""Guest disk image files, through qemu-img.

Guests never write a base image: each gets a qcow2 overlay of it. A
snapshot flattens a guest's overlay into a standalone image, written under
a temporary name and renamed into place once it is complete and on disk,
so that a crash leaves either the whole file or none (replaced_atomically,
which also writes a rescued guest's saved definition).
"""

import contextlib
import json
import os
import subprocess
import tempfile


class ImageError(Exception):
    """qemu-img failed; the message carries what it said."""


def _qemu_img(*args):
    try:
        result = subprocess.run(['qemu-img', *args], check=True,
                                capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        raise ImageError(f'qemu-img {args[0]} failed: '
                         f'{error.stderr.strip()}') from error
    return result.stdout


def image_format(path):
    """The format qemu-img detects ('qcow2', 'raw', ...)."""
    return json.loads(_qemu_img('info', '--output=json', path))['format']


def create_overlay(base, overlay):
    """A qcow2 overlay of base, so the guest never writes the base."""
    _qemu_img('create', '-q', '-f', 'qcow2', '-F', image_format(base),
              '-b', os.path.abspath(base), overlay)


def flatten(source, dest):
    """Copy source, backing chain included, to dest as a standalone qcow2
    image; return dest's size in bytes."""
    with replaced_atomically(dest) as partial:
        _qemu_img('convert', '-O', 'qcow2', source, partial)
    return os.path.getsize(dest)


@contextlib.contextmanager
def replaced_atomically(path):
    """Yield a temporary path beside path to write the new file to; when
    the block succeeds, flush it to disk and rename it to path, else
    remove it. Parent directories are created."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # A dot name, so that whoever lists the directory skips it.
    handle, partial = tempfile.mkstemp(
        dir=directory, prefix=f'.{os.path.basename(path)}.', suffix='.part')
    os.close(handle)
    try:
        yield partial
        _fsync(partial)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
    # The rename itself is durable only once the directory is flushed.
    _fsync(directory)


def _fsync(path):
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
