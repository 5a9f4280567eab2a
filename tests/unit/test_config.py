"""Configuration options: defaults, limits, help, and the generated sample."""

import difflib
import os
import re
import socket
import subprocess
import sys
import tempfile

from oslo_config import cfg

from compute_agent.conf import compute
from compute_agent.conf import default
from compute_agent.conf import libvirt
from compute_agent.conf import metrics
from compute_agent.conf import opts
from compute_agent.conf import upgrade_levels
from tests.unit import base

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SAMPLE = os.path.join('etc', 'compute-agent.conf.sample')
GENERATOR_CONFIG = os.path.join('etc', 'compute-agent-config-generator.conf')

# Runs oslo-config-generator in a fresh interpreter, like `tox -e
# genconfig`: in this process other tests change library defaults (e.g.
# rpc.set_defaults() sets oslo.messaging's control_exchange), which would
# leak into the output. With a host name as first argument, the machine's
# host and process names are replaced first, to show what another machine
# would generate.
_GENERATE = '''
import socket
import sys
fake_host = sys.argv.pop(1)
if fake_host:
    socket.gethostname = lambda: fake_host
    socket.getfqdn = lambda name='': fake_host + '.example.invalid'
    sys.argv[0] = '/usr/bin/' + fake_host
from oslo_config import generator
generator.main(args=sys.argv[1:])
'''


def _find_opt(group, name):
    for group_key, group_opts in opts.list_opts():
        group_name = getattr(group_key, 'name', group_key)
        if group_name != group:
            continue
        for opt in group_opts:
            if opt.name == name:
                return opt
    raise AssertionError(f'no option [{group}] {name} in list_opts()')


class TestDefaults(base.TestCase):
    def setUp(self):
        super().setUp()
        self.conf = cfg.ConfigOpts()
        for module in (default, compute, libvirt, metrics, upgrade_levels):
            module.register_opts(self.conf)

    def parse(self, config_text=None):
        files = []
        if config_text is not None:
            fd, path = tempfile.mkstemp(suffix='.conf')
            self.addCleanup(os.unlink, path)
            with os.fdopen(fd, 'w') as f:
                f.write(config_text)
            files.append(path)
        self.conf([], project='compute-agent', default_config_files=files,
                  default_config_dirs=[])

    def test_defaults(self):
        self.parse()
        self.assertEqual(60, self.conf.shutdown_timeout)
        self.assertEqual(180, self.conf.graceful_shutdown_timeout)
        self.assertEqual(10, self.conf.compute.shutdown_retry_interval)
        self.assertEqual('qemu:///system', self.conf.libvirt.connection_uri)
        self.assertEqual('kvm', self.conf.libvirt.virt_type)
        self.assertEqual('/var/lib/compute-agent', self.conf.state_path)
        self.assertIsNone(self.conf.upgrade_levels.compute)
        self.assertEqual(socket.gethostname(), self.conf.host)

    def test_minimums(self):
        self.assertEqual(
            0, _find_opt('DEFAULT', 'shutdown_timeout').type.min)
        self.assertEqual(
            1, _find_opt('compute', 'shutdown_retry_interval').type.min)

    def test_values_below_minimum_are_refused(self):
        self.parse('[DEFAULT]\nshutdown_timeout = -1\n'
                   '[compute]\nshutdown_retry_interval = 0\n')
        self.assertRaises(cfg.ConfigFileValueError, getattr, self.conf,
                          'shutdown_timeout')
        self.assertRaises(cfg.ConfigFileValueError, getattr,
                          self.conf.compute, 'shutdown_retry_interval')

    def test_minimum_values_are_accepted(self):
        self.parse('[DEFAULT]\nshutdown_timeout = 0\n'
                   '[compute]\nshutdown_retry_interval = 1\n')
        self.assertEqual(0, self.conf.shutdown_timeout)
        self.assertEqual(1, self.conf.compute.shutdown_retry_interval)

    def test_virt_type_choices(self):
        self.parse('[libvirt]\nvirt_type = xen\n')
        self.assertRaises(cfg.ConfigFileValueError, getattr,
                          self.conf.libvirt, 'virt_type')

    def test_host_sample_default_hides_the_machine_name(self):
        host = _find_opt('DEFAULT', 'host')
        self.assertEqual(socket.gethostname(), host.default)
        self.assertEqual('<hostname>', host.sample_default)

    def test_every_option_has_help(self):
        for group, group_opts in opts.list_opts():
            for opt in group_opts:
                self.assertTrue(opt.help and opt.help.strip(),
                                f'[{group}] {opt.name} has no help text')

    def test_list_opts_covers_every_registered_option(self):
        listed = {(getattr(group, 'name', group), opt.name)
                  for group, group_opts in opts.list_opts()
                  for opt in group_opts}
        groups = ('compute', 'libvirt', 'metrics', 'upgrade_levels')
        builtin = set(cfg.ConfigOpts())   # oslo.config's own options
        registered = {('DEFAULT', name) for name in self.conf
                      if name not in groups and name not in builtin}
        for group in groups:
            registered |= {(group, name) for name in self.conf[group]}
        self.assertEqual(registered, listed)


class TestSampleConfig(base.TestCase):
    def generate(self, fake_host=''):
        fd, path = tempfile.mkstemp(suffix='.conf.sample')
        os.close(fd)
        self.addCleanup(os.unlink, path)
        proc = subprocess.run(
            [sys.executable, '-c', _GENERATE, fake_host,
             '--config-file', GENERATOR_CONFIG, '--output-file', path],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.assertEqual(0, proc.returncode,
                         f'oslo-config-generator failed:\n{proc.stdout}')
        with open(path) as f:
            return f.read()

    def read_sample(self):
        with open(os.path.join(REPO, SAMPLE)) as f:
            return f.read()

    @staticmethod
    def diff(old, new, old_name, new_name):
        lines = list(difflib.unified_diff(
            old.splitlines(True), new.splitlines(True), old_name, new_name))
        return ''.join(lines[:80])

    def test_sample_is_up_to_date(self):
        checked_in = self.read_sample()
        generated = self.generate()
        if checked_in != generated:
            self.fail(f'{SAMPLE} is out of date: run `tox -e genconfig` and '
                      f'commit the result.\n'
                      f'{self.diff(checked_in, generated, SAMPLE, "gen")}')

    def test_sample_does_not_depend_on_the_machine(self):
        here = self.generate()
        elsewhere = self.generate(fake_host='zz-other-host')
        if here != elsewhere:
            self.fail('the generated sample embeds values of the machine it '
                      'runs on; give those options a sample_default.\n'
                      f'{self.diff(here, elsewhere, "here", "elsewhere")}')

    def test_sample_shows_no_host_name(self):
        names = {socket.gethostname(), socket.getfqdn()}
        sample = self.read_sample()
        self.assertIn('\n#host = <hostname>\n', sample)
        for name, value in re.findall(r'^#(\w+) = (.*)$', sample, re.M):
            self.assertNotIn(value, names, f'{name} shows this machine')

    def test_generator_config_covers_the_libraries(self):
        with open(os.path.join(REPO, GENERATOR_CONFIG)) as f:
            namespaces = re.findall(r'^namespace = (\S+)$', f.read(), re.M)
        self.assertEqual(['compute_agent', 'oslo.messaging', 'oslo.log'],
                         namespaces)
