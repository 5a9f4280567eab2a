"""Benchmark a cold migration's disk copy: through the filesystem, and
streamed through a (private, real) libvirtd as between hosts that share
no storage.

Prints figures and PASS/MISS against targets; a missed target still
exits 0, a broken run does not. Needs root (the private libvirtd runs in
its own mount namespace). Run from the repository root; --help lists the
options.
"""

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

from compute_agent.virt.libvirt import disk_stream  # noqa: E402
from tests.realguest import libvirtd  # noqa: E402

MIB = 1024 * 1024
# The stream crosses a local socket and libvirtd's worker: it should keep
# at least this share of a plain file copy's speed on the same machine.
STREAM_SHARE_TARGET = 0.5
# Chunked reads: the agent must not hold the disk in memory.
RSS_GROWTH_TARGET_MIB = 32


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size-mib', type=int, default=512,
                        help='size of the disk file copied (default 512)')
    parser.add_argument('--repeat', type=int, default=3,
                        help='copies of each kind (default 3)')
    return parser.parse_args()


def make_disk(path, size_mib):
    # Random data: nothing along the way can shortcut zeros.
    with open(path, 'wb') as disk:
        for _ in range(size_mib):
            disk.write(os.urandom(MIB))


def max_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(copy):
    started = time.monotonic()
    copy()
    return time.monotonic() - started


def line(label, seconds, size_mib, verdict=''):
    speeds = [size_mib / s for s in seconds]
    print(f'{label:<34} median {statistics.median(seconds):6.2f} s  '
          f'{statistics.median(speeds):7.1f} MiB/s (min '
          f'{min(speeds):.1f})  {verdict}')
    return statistics.median(speeds)


def main():
    args = parse_args()
    available, reason = libvirtd.realguest_available()
    if not available:
        sys.exit(f'disk_copy_bench: {reason}')
    with tempfile.TemporaryDirectory(prefix='disk-copy-bench-') as work:
        disk = os.path.join(work, 'disk.qcow2')
        make_disk(disk, args.size_mib)
        destination = os.path.join(work, 'destination')
        os.makedirs(destination)
        rss_before = max_rss_mib()
        file_copies = [timed(lambda: disk_stream.copy_file(
            disk, os.path.join(destination, 'disk.qcow2'), lambda: None))
            for _ in range(args.repeat)]
        with libvirtd.PrivateLibvirtd('bench') as hypervisor:
            streams = [timed(lambda: disk_stream.upload(
                hypervisor.uri, destination, disk,
                disk_stream.POOL_PREFIX + 'bench'))
                for _ in range(args.repeat)]
        growth = max_rss_mib() - rss_before

    print(f'disk of {args.size_mib} MiB, {args.repeat} copies each, '
          f'load average {os.getloadavg()[0]:.2f}')
    file_speed = line('filesystem copy (copy_file)', file_copies,
                      args.size_mib)
    stream_speed = statistics.median(
        [args.size_mib / s for s in streams])
    share = stream_speed / file_speed
    line('stream through libvirtd (upload)', streams, args.size_mib,
         f'{share:.0%} of the file copy, target >= '
         f'{STREAM_SHARE_TARGET:.0%}  '
         f'{"PASS" if share >= STREAM_SHARE_TARGET else "MISS"}')
    print(f'{"agent max RSS growth":<34} {growth:.1f} MiB, target < '
          f'{RSS_GROWTH_TARGET_MIB} MiB  '
          f'{"PASS" if growth < RSS_GROWTH_TARGET_MIB else "MISS"}')


if __name__ == '__main__':
    main()
