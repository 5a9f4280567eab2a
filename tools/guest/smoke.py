#!/usr/bin/env python3
"""Check that real QEMU guests work here, and time them.

Starts a private libvirtd, boots the cooperative (ACPI) and the ignoring
(no ACPI) test guest side by side, presses the ACPI power button of both
and reports: define+create time, time until the guest printed its READY
line, time from the button press to SHUTOFF for the ACPI guest, and that
the other guest is still running 10 s after its button press.

Usage, as root, with a Python that has libvirt-python (e.g. the tox or
development virtualenv):  python tools/guest/smoke.py [--workdir DIR]

Serial logs, disk overlays and the libvirtd directories go to DIR (a
temporary directory by default, kept so that the logs can be read).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from xml.sax.saxutils import escape
from xml.sax.saxutils import quoteattr

import libvirt

# The harness lives in the checkout's tests package, which is not installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
from tests.realguest import libvirtd  # noqa: E402

READY_TIMEOUT = 60
SHUTOFF_TIMEOUT = 30
IGNORED_FOR = 10

DOMAIN_XML = """\
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <cpu mode='custom' match='exact'>
    <model fallback='forbid'>qemu64</model>
  </cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file={disk}/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path={serial_log}/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path={serial_log}/>
      <target type='serial' port='0'/>
    </console>
  </devices>
</domain>
"""


def domain_xml(name, images, initrd, disk, serial_log):
    return DOMAIN_XML.format(
        name=escape(name), kernel=escape(images['kernel']),
        initrd=escape(initrd), cmdline=escape(libvirtd.GUEST_CMDLINE),
        disk=quoteattr(disk), serial_log=quoteattr(serial_log))


def overlay(base, path):
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'qcow2',
                    '-b', base, path], check=True)


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f'FAIL: {what} within {timeout} s')
        time.sleep(0.05)
    return time.monotonic()


def printed_ready(serial_log):
    try:
        with open(serial_log, errors='replace') as log:
            output = log.read()
    except FileNotFoundError:
        return False
    if libvirtd.GUEST_FAILED_LINE in output:
        raise SystemExit(f'FAIL: the guest reported in {serial_log}:\n'
                         f'{output}')
    return libvirtd.GUEST_READY_LINE in output


def state(domain):
    return domain.state()[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--workdir', help='where logs and overlays go')
    args = parser.parse_args()
    available, reason = libvirtd.realguest_available()
    if not available:
        raise SystemExit(f'SKIP: {reason}')
    workdir = args.workdir or tempfile.mkdtemp(prefix='guest-smoke-')
    os.makedirs(workdir, exist_ok=True)
    images = libvirtd.guest_images()

    with libvirtd.PrivateLibvirtd('smoke', base_dir=workdir) as host:
        print(f'libvirtd pid {host.pid}, {host.uri}')
        conn = libvirt.open(host.uri)
        guests = {}
        for kind in ('acpi', 'noacpi'):
            name = f'smoke-{kind}'
            serial_log = os.path.join(workdir, f'{name}.serial.log')
            disk = os.path.join(workdir, f'{name}.qcow2')
            overlay(images['disk'], disk)
            xml = domain_xml(name, images, images[f'initramfs_{kind}'],
                             disk, serial_log)
            started = time.monotonic()
            domain = conn.defineXML(xml)
            domain.create()
            created = time.monotonic()
            print(f'{name}: define+create {created - started:.2f} s')
            guests[kind] = (domain, serial_log, started)

        for kind, (domain, serial_log, started) in guests.items():
            ready = wait_for(lambda: printed_ready(serial_log),
                             READY_TIMEOUT, f'{serial_log} has no READY line')
            print(f'smoke-{kind}: READY {ready - started:.2f} s after '
                  f'define')

        pressed = time.monotonic()
        for domain, _, _ in guests.values():
            domain.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        acpi_guest, noacpi_guest = guests['acpi'][0], guests['noacpi'][0]
        shutoff = wait_for(
            lambda: state(acpi_guest) == libvirt.VIR_DOMAIN_SHUTOFF,
            SHUTOFF_TIMEOUT, 'the ACPI guest did not power off')
        print(f'smoke-acpi: SHUTOFF {shutoff - pressed:.2f} s after the '
              f'power button')

        time.sleep(max(0.0, pressed + IGNORED_FOR - time.monotonic()))
        if state(noacpi_guest) != libvirt.VIR_DOMAIN_RUNNING:
            raise SystemExit('FAIL: the no-ACPI guest reacted to the power '
                             'button')
        print(f'smoke-noacpi: still running {IGNORED_FOR} s after the '
              f'power button')
        destroying = time.monotonic()
        noacpi_guest.destroy()
        print(f'smoke-noacpi: destroy {time.monotonic() - destroying:.2f} s')
        conn.close()
    print(f'PASS (logs in {workdir})')


if __name__ == '__main__':
    main()
