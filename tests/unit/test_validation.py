"""Request-argument checks: bad input is refused with InvalidInput naming
the argument; good input comes back normalised and copied."""

import copy

from compute_agent import exception
from compute_agent import validation
from tests.unit import base

UUID = '6f1a5a3e-58f5-4c5e-9b89-0c6f1d2b7a10'


def _spec(**changes):
    spec = {'uuid': UUID, 'name': 'web-1', 'vcpus': 2, 'memory_mb': 512,
            'image': {'id': 'cirros', 'properties': {}}}
    spec.update(changes)
    return spec


def _image(**changes):
    image = {'id': 'cirros', 'properties': {}}
    image.update(changes)
    return image


class _InvalidInputMixin:
    def assertInvalid(self, names, func, *args, **kwargs):
        """func(*args) raises InvalidInput whose message names ``names``."""
        error = self.assertRaises(exception.InvalidInput, func, *args,
                                  **kwargs)
        self.assertIn(names, str(error))
        return error


class TestInstanceUuid(_InvalidInputMixin, base.TestCase):
    def test_not_a_string(self):
        for value in (None, 12, b'6f1a5a3e58f54c5e9b890c6f1d2b7a10',
                      ['x'], {'uuid': UUID}):
            self.assertInvalid('instance_uuid', validation.instance_uuid,
                               value)

    def test_not_a_uuid(self):
        for value in ('', 'abc', UUID[:-1], UUID + '0', 'z' * 32):
            error = self.assertInvalid('instance_uuid',
                                       validation.instance_uuid, value)
            self.assertIn(repr(value), str(error))

    def test_message_names_the_given_argument(self):
        self.assertInvalid('migration_uuid', validation.instance_uuid,
                           'nope', argument='migration_uuid')

    def test_valid_uuid_is_returned_canonical(self):
        self.assertEqual(UUID, validation.instance_uuid(UUID))

    def test_uppercase_and_undashed_uuid_are_normalised(self):
        self.assertEqual(UUID, validation.instance_uuid(UUID.upper()))
        self.assertEqual(UUID,
                         validation.instance_uuid(UUID.replace('-', '')))


class TestBoolean(_InvalidInputMixin, base.TestCase):
    def test_non_booleans_are_refused(self):
        for value in ('yes', 'true', 1, 0, None):
            error = self.assertInvalid('clean_shutdown', validation.boolean,
                                       value, 'clean_shutdown')
            self.assertIn(repr(value), str(error))

    def test_booleans_pass(self):
        self.assertIs(True, validation.boolean(True, 'clean_shutdown'))
        self.assertIs(False, validation.boolean(False, 'clean_shutdown'))


class TestOptionalTimeout(_InvalidInputMixin, base.TestCase):
    def test_negative(self):
        self.assertInvalid('shutdown_timeout', validation.optional_timeout,
                           -1)

    def test_float(self):
        self.assertInvalid('shutdown_timeout', validation.optional_timeout,
                           1.5)
        self.assertInvalid('shutdown_timeout', validation.optional_timeout,
                           10.0)

    def test_string(self):
        self.assertInvalid('shutdown_timeout', validation.optional_timeout,
                           '10')

    def test_boolean(self):
        self.assertInvalid('shutdown_timeout', validation.optional_timeout,
                           True)
        self.assertInvalid('shutdown_timeout', validation.optional_timeout,
                           False)

    def test_message_names_the_given_argument(self):
        self.assertInvalid('rescue_timeout', validation.optional_timeout,
                           -3, argument='rescue_timeout')

    def test_valid_values(self):
        self.assertIsNone(validation.optional_timeout(None))
        self.assertEqual(0, validation.optional_timeout(0))
        self.assertEqual(600, validation.optional_timeout(600))


class TestRebootType(_InvalidInputMixin, base.TestCase):
    def test_invalid_values(self):
        for value in ('soft', 'hard', 'WARM', '', None, 1):
            error = self.assertInvalid('reboot_type', validation.reboot_type,
                                       value)
            self.assertIn('SOFT', str(error))
            self.assertIn('HARD', str(error))

    def test_valid_values(self):
        self.assertEqual('SOFT', validation.reboot_type('SOFT'))
        self.assertEqual('HARD', validation.reboot_type('HARD'))


class TestBuildRequest(_InvalidInputMixin, base.TestCase):
    def test_not_a_dict(self):
        for value in (None, 'web-1', [_spec()], 3):
            self.assertInvalid('instance', validation.build_request, value)

    def test_unknown_fields(self):
        error = self.assertInvalid('flavor', validation.build_request,
                                   _spec(flavor='m1.small', zone='a'))
        self.assertIn('zone', str(error))
        self.assertIn('unknown', str(error))

    def test_missing_fields(self):
        for key in ('uuid', 'name', 'vcpus', 'memory_mb', 'image'):
            spec = _spec()
            del spec[key]
            error = self.assertInvalid(key, validation.build_request, spec)
            self.assertIn('lacks', str(error))

    def test_invalid_uuid(self):
        self.assertInvalid('instance.uuid', validation.build_request,
                           _spec(uuid='not-a-uuid'))
        self.assertInvalid('instance.uuid', validation.build_request,
                           _spec(uuid=7))

    def test_empty_name(self):
        for name in ('', '   '):
            self.assertInvalid('instance.name', validation.build_request,
                               _spec(name=name))

    def test_name_not_a_string(self):
        self.assertInvalid('instance.name', validation.build_request,
                           _spec(name=None))

    def test_name_too_long(self):
        name = 'x' * (validation.MAX_NAME_LENGTH + 1)
        self.assertInvalid('instance.name', validation.build_request,
                           _spec(name=name))

    def test_name_of_maximum_length_is_accepted(self):
        name = 'x' * validation.MAX_NAME_LENGTH
        self.assertEqual(name,
                         validation.build_request(_spec(name=name))['name'])

    def test_invalid_vcpus(self):
        for vcpus in (0, -1, True, '2', 1.0, None):
            self.assertInvalid('instance.vcpus', validation.build_request,
                               _spec(vcpus=vcpus))

    def test_invalid_memory_mb(self):
        for memory_mb in (0, -1, True, '512', 512.0):
            self.assertInvalid('instance.memory_mb',
                               validation.build_request,
                               _spec(memory_mb=memory_mb))

    def test_memory_mb_below_minimum(self):
        error = self.assertInvalid(
            'instance.memory_mb', validation.build_request,
            _spec(memory_mb=validation.MIN_MEMORY_MB - 1))
        self.assertIn(str(validation.MIN_MEMORY_MB), str(error))

    def test_memory_mb_at_minimum_is_accepted(self):
        spec = _spec(memory_mb=validation.MIN_MEMORY_MB)
        self.assertEqual(validation.MIN_MEMORY_MB,
                         validation.build_request(spec)['memory_mb'])

    def test_image_not_a_dict(self):
        for image in (None, 'cirros', ['cirros']):
            self.assertInvalid('instance.image', validation.build_request,
                               _spec(image=image))

    def test_image_unknown_keys(self):
        error = self.assertInvalid('instance.image', validation.build_request,
                                   _spec(image=_image(format='qcow2')))
        self.assertIn('format', str(error))

    def test_image_missing_id(self):
        image = _image()
        del image['id']
        self.assertInvalid('instance.image.id', validation.build_request,
                           _spec(image=image))

    def test_image_id_empty_or_not_a_string(self):
        for image_id in ('', None, 5):
            self.assertInvalid('instance.image.id', validation.build_request,
                               _spec(image=_image(id=image_id)))

    def test_image_properties_not_a_dict(self):
        for properties in (None, 'a=b', [('a', 'b')]):
            self.assertInvalid('instance.image.properties',
                               validation.build_request,
                               _spec(image=_image(properties=properties)))

    def test_image_paths_not_strings(self):
        image = _image(kernel=1, ramdisk='/boot/initrd')
        self.assertInvalid('instance.image.kernel', validation.build_request,
                           _spec(image=image))

    def test_kernel_without_ramdisk(self):
        self.assertInvalid('instance.image.ramdisk', validation.build_request,
                           _spec(image=_image(kernel='/boot/vmlinuz')))

    def test_ramdisk_without_kernel(self):
        self.assertInvalid('instance.image.kernel', validation.build_request,
                           _spec(image=_image(ramdisk='/boot/initrd')))

    def test_direct_kernel_boot_with_a_disk_attached(self):
        # RPC 1.2: a kernel and initramfs may boot a guest whose disk is
        # attached as its first drive.
        image = _image(kernel='/boot/vmlinuz', ramdisk='/boot/initrd',
                       disk='/var/lib/images/base.qcow2')
        spec = validation.build_request(_spec(image=image))
        self.assertEqual('/var/lib/images/base.qcow2', spec['image']['disk'])

    def test_cmdline_without_kernel(self):
        image = _image(cmdline='console=ttyS0',
                       disk='/var/lib/images/base.qcow2')
        self.assertInvalid('instance.image.cmdline', validation.build_request,
                           _spec(image=image))

    def test_valid_request_normalises_uuid(self):
        result = validation.build_request(_spec(uuid=UUID.upper()))
        self.assertEqual(UUID, result['uuid'])

    def test_valid_request_is_returned_as_a_copy(self):
        spec = _spec(image=_image(properties={'os_shutdown_timeout': '30'}))
        original = copy.deepcopy(spec)
        result = validation.build_request(spec)
        self.assertEqual(dict(original, wait_for_events=[]), result)
        self.assertIsNot(spec, result)
        self.assertIsNot(spec['image'], result['image'])
        self.assertIsNot(spec['image']['properties'],
                         result['image']['properties'])
        result['name'] = 'changed'
        result['image']['id'] = 'changed'
        result['image']['properties']['os_shutdown_timeout'] = '1'
        self.assertEqual(original, spec)

    def test_missing_properties_default_to_empty(self):
        result = validation.build_request(_spec(image={'id': 'cirros'}))
        self.assertEqual({}, result['image']['properties'])

    def test_direct_boot_image_is_accepted(self):
        image = _image(kernel='/boot/vmlinuz', ramdisk='/boot/initrd',
                       cmdline='console=ttyS0')
        result = validation.build_request(_spec(image=image))
        self.assertEqual(image, result['image'])

    def test_disk_image_is_accepted(self):
        image = _image(disk='/var/lib/images/base.qcow2')
        result = validation.build_request(_spec(image=image))
        self.assertEqual(image, result['image'])


class TestMigrationTarget(base.TestCase):
    def test_none_and_short_strings_are_taken_as_a_copy(self):
        self.assertIsNone(validation.migration_target(None))
        target = {'libvirt_uri': 'qemu+tls://b/system', 'data_uri': None}
        result = validation.migration_target(target)
        self.assertEqual(target, result)
        self.assertIsNot(target, result)

    def test_anything_else_is_invalid_input(self):
        for value in ('qemu:///system', ['uri'], {'uri': 5},
                      {'uri': 'x' * 4097}, {5: 'x'},
                      {f'k{i}': 'v' for i in range(17)}):
            error = self.assertRaises(exception.InvalidInput,
                                      validation.migration_target, value)
            self.assertIn('migration_target must be an object', str(error))


class TestInstanceName(_InvalidInputMixin, base.TestCase):
    # C0 controls (NUL, TAB, LF, CR, ESC among them), DEL, C1 controls,
    # the Unicode line and paragraph separators, which break a log line
    # or a terminal, and a lone surrogate, which UTF-8 cannot encode.
    BAD_CHARACTERS = ('\x00', '\t', '\n', '\r', '\x1b', '\x1f', '\x7f',
                      '\x80', '\x85', '\x9f', '\u2028', '\u2029',
                      '\ud800')

    def _peer(self, name):
        return {'uuid': UUID, 'name': name,
                'flavor': {'vcpus': 1, 'memory_mb': 128},
                'image': _image()}

    def test_control_characters_are_refused_in_a_build(self):
        for character in self.BAD_CHARACTERS:
            error = self.assertInvalid(
                'instance.name', validation.build_request,
                _spec(name=f'web{character}1'))
            # The message shows the name escaped, never raw.
            self.assertNotIn(character, str(error))

    def test_control_characters_are_refused_from_a_peer(self):
        for character in self.BAD_CHARACTERS:
            self.assertInvalid('instance.name', validation.peer_instance,
                               self._peer(f'web{character}1'))

    def test_a_huge_name_is_refused_without_echoing_it(self):
        error = self.assertInvalid('instance.name', validation.build_request,
                                   _spec(name='x' * 1_000_000))
        self.assertLess(len(str(error)), 500)

    def test_no_message_echoes_a_huge_argument(self):
        huge = 'y' * 1_000_000
        for call in (lambda: validation.instance_uuid(huge),
                     lambda: validation.event_name(huge),
                     lambda: validation.host_name(huge, 'host')):
            error = self.assertRaises(exception.InvalidInput, call)
            self.assertLess(len(str(error)), 500)

    def test_printable_unicode_names_are_accepted(self):
        for name in ('web-1', 'db 2', 'сервер', 'ウェブ', 'a/b;c&d<e>"f\''):
            self.assertEqual(name, validation.build_request(
                _spec(name=name))['name'])
            self.assertEqual(name, validation.peer_instance(
                self._peer(name))['name'])


class TestPeerPaths(_InvalidInputMixin, base.TestCase):
    def test_absolute_normalised_paths_pass(self):
        self.assertEqual('/var/lib/compute-agent/instances/x',
                         validation.absolute_path(
                             '/var/lib/compute-agent/instances/x', 'path'))

    def test_relative_dotted_and_unprintable_paths_are_invalid(self):
        for value in ('', 'relative', '../../etc/passwd', '/a/../etc',
                      '/a/./b', '/a//b', '//a', '/a/', '/a\x00b', '/a\nb',
                      None, 7):
            self.assertInvalid('destination_path', validation.absolute_path,
                               value, 'destination_path')

    def test_plain_file_names_pass(self):
        self.assertEqual('marker-1', validation.file_name('marker-1', 'm'))

    def test_directories_and_unprintable_names_are_invalid(self):
        for value in ('', '.', '..', 'a/b', '/a', 'a\x00', 'a\n', None):
            self.assertInvalid('marker', validation.file_name, value,
                               'marker')
