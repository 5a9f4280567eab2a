"""The base of every real-guest test."""

import testtools

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
