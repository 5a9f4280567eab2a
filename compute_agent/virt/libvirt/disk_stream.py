"""A guest's disk sent to another host through that host's libvirtd.

A cold migration between hosts that share no storage, and where the
source does not see the destination's instance directory either, copies
the powered-off guest's disk file over a libvirt stream: the source agent
opens the destination's migration URI (the one its libvirtd already
offers for live migration), creates a transient directory storage pool
over the destination's instance directory, and uploads the file into a
volume of the same name. The pool is destroyed again at the end; being
transient, that leaves the directory and the file in place. No ssh keys
and no second channel between the hosts are needed, only what live
migration needs already.

The bytes are sent as they are (a qcow2 overlay stays a qcow2 file naming
its base image, which every host keeps at the same path).
"""

import logging
import os
import time
from xml.sax import saxutils

import libvirt

LOG = logging.getLogger(__name__)

CHUNK = 1024 * 1024
POOL_PREFIX = 'compute-agent-incoming-'


class StreamError(Exception):
    """The upload failed; the message says at which step."""


class CopyStopped(Exception):
    """should_stop() gave a reason; the message is that reason."""


def _reader(source, should_stop):
    """A read(size) of source in chunks of at most CHUNK that raises
    CopyStopped once should_stop() gives a reason."""
    def read(size=CHUNK):
        reason = should_stop()
        if reason:
            raise CopyStopped(reason)
        return source.read(min(size, CHUNK))
    return read


def copy_file(path, copy, should_stop):
    """Copy path to copy in chunks, checking should_stop() (a reason to
    stop, or None) before each; the caller removes a partial copy."""
    with open(path, 'rb') as source, open(copy, 'wb') as target:
        read = _reader(source, should_stop)
        while chunk := read():
            target.write(chunk)


def _pool_xml(name, directory):
    return (f'<pool type="dir"><name>{saxutils.escape(name)}</name>'
            f'<target><path>{saxutils.escape(directory)}</path></target>'
            f'</pool>')


def _volume_xml(name, size):
    return (f'<volume><name>{saxutils.escape(name)}</name>'
            f'<capacity unit="bytes">{size}</capacity>'
            f'<allocation unit="bytes">0</allocation>'
            f'<target><format type="raw"/>'
            # As qemu-img creates the source's own disk.
            f'<permissions><mode>0644</mode></permissions>'
            f'</target></volume>')


def upload(uri, directory, path, pool_name, should_stop=lambda: None):
    """Send the file at path into directory on the libvirtd at uri, under
    the file's own name. Returns (bytes sent, seconds taken).

    :param pool_name: names the transient pool; unique per instance, so
        that a pool left by an earlier attempt that died is recognised
        and replaced.
    :param should_stop: called before each chunk; a reason it returns
        stops the upload with CopyStopped, the partial copy removed.
    """
    started = time.monotonic()
    size = os.path.getsize(path)
    step = f'connect to {uri}'
    try:
        connection = libvirt.open(uri)
    except libvirt.libvirtError as error:
        raise StreamError(f'could not {step}: '
                          f'{error.get_error_message()}') from error
    try:
        step = f'create a storage pool over {directory} there'
        pool = _fresh_pool(connection, pool_name, directory)
        try:
            name = os.path.basename(path)
            step = f'create {name} in {directory} there'
            _remove_stale_copy(pool, name)
            volume = pool.createXML(_volume_xml(name, size), 0)
            step = f'send {size} bytes to {directory} there'
            _send(connection, volume, path, size, should_stop)
        finally:
            _destroy_quietly(pool)
    except libvirt.libvirtError as error:
        raise StreamError(f'could not {step}: '
                          f'{error.get_error_message()}') from error
    except OSError as error:
        raise StreamError(f'could not {step}: {error}') from error
    finally:
        connection.close()
    return size, time.monotonic() - started


def _fresh_pool(connection, name, directory):
    try:
        _destroy_quietly(connection.storagePoolLookupByName(name))
    except libvirt.libvirtError as error:
        if error.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
            raise
    return connection.storagePoolCreateXML(
        _pool_xml(name, directory),
        libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD)


def _remove_stale_copy(pool, name):
    # Left by an attempt that died mid-copy; a copy always starts afresh,
    # as the copy through a mounted path replaces its file.
    try:
        pool.storageVolLookupByName(name).delete(0)
    except libvirt.libvirtError as error:
        if error.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise


def _send(connection, volume, path, size, should_stop):
    stream = connection.newStream(0)
    try:
        volume.upload(stream, 0, size, 0)
        with open(path, 'rb') as source:
            read = _reader(source, should_stop)
            stream.sendAll(lambda _stream, nbytes, _opaque: read(nbytes),
                           None)
        stream.finish()
    except BaseException:
        # A half-written file must not pass for the disk.
        try:
            stream.abort()
        except libvirt.libvirtError:
            pass
        try:
            volume.delete(0)
        except libvirt.libvirtError as error:
            LOG.warning('Could not remove the partial copy of %s there: %s',
                        path, error.get_error_message())
        raise


def _destroy_quietly(pool):
    try:
        pool.destroy()
    except libvirt.libvirtError as error:
        LOG.warning('Could not destroy the transient storage pool %s: %s',
                    pool.name(), error.get_error_message())
