"""The base of every real-guest test."""

import time

import testtools
from testtools import content

from tests.realguest import libvirtd


class TestCase(testtools.TestCase):
    """Skipped where real guests cannot run (not root, no libvirtd or
    QEMU); self.images holds the cached guest images."""

    def setUp(self):
        super().setUp()
        available, reason = libvirtd.realguest_available()
        if not available:
            self.skipTest(reason)
        self.images = libvirtd.guest_images()

    def timed(self, name, operation, *args):
        """operation(*args), its duration kept as a detail of the test."""
        started = time.monotonic()
        result = operation(*args)
        self.addDetail(f'{name}-seconds', content.text_content(
            f'{time.monotonic() - started:.3f}'))
        return result
