"""Which shutdown timeout a power-off uses: request, image, then config."""

import logging

import fixtures

from compute_agent import power_policy
from tests.unit import base

UUID = '6f1a5a3e-58f5-4c5e-9b89-0c6f1d2b7a10'
CONFIG_TIMEOUT = 60


def _props(value):
    return {power_policy.IMAGE_PROPERTY: value}


class TestPlanPowerOff(base.TestCase):
    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(
            name=power_policy.__name__, level=logging.WARNING))

    def plan(self, clean_shutdown=True, request_timeout=None,
             image_properties=None):
        return power_policy.plan_power_off(
            clean_shutdown, request_timeout, image_properties,
            CONFIG_TIMEOUT, instance_uuid=UUID)

    def test_request_beats_image_and_config(self):
        plan = self.plan(request_timeout=5, image_properties=_props('30'))
        self.assertEqual(5, plan.timeout)
        self.assertEqual('request', plan.source)
        self.assertEqual('clean', plan.requested)
        self.assertTrue(plan.attempt_clean)

    def test_image_beats_config(self):
        plan = self.plan(image_properties=_props('30'))
        self.assertEqual(30, plan.timeout)
        self.assertEqual('image', plan.source)

    def test_config_when_neither_request_nor_image(self):
        for properties in (None, {}, {'hw_vif_model': 'virtio'}):
            plan = self.plan(image_properties=properties)
            self.assertEqual(CONFIG_TIMEOUT, plan.timeout)
            self.assertEqual('config', plan.source)
        self.assertEqual('', self.log.output)

    def test_image_property_as_string_or_int(self):
        for value in ('30', 30, ' 30 '):
            plan = self.plan(image_properties=_props(value))
            self.assertEqual(30, plan.timeout, value)
            self.assertEqual('image', plan.source)
        self.assertEqual('', self.log.output)

    def test_invalid_image_property_is_ignored_and_logged(self):
        for value in ('abc', '-5', -5, 1.5, True, ''):
            self.log.reset_output()
            plan = self.plan(image_properties=_props(value))
            self.assertEqual(CONFIG_TIMEOUT, plan.timeout, repr(value))
            self.assertEqual('config', plan.source, repr(value))
            self.assertIn(power_policy.IMAGE_PROPERTY, self.log.output)
            self.assertIn(repr(value), self.log.output)
            self.assertIn(UUID, self.log.output)

    def test_invalid_image_property_is_logged_as_a_warning(self):
        with self.assertLogs(power_policy.__name__, logging.WARNING) as logs:
            self.plan(image_properties=_props('abc'))
        self.assertEqual(['WARNING'],
                         [record.levelname for record in logs.records])

    def test_request_timeout_hides_invalid_image_property(self):
        plan = self.plan(request_timeout=7, image_properties=_props('abc'))
        self.assertEqual(7, plan.timeout)
        self.assertEqual('request', plan.source)

    def test_forced_request(self):
        for request_timeout in (None, 0, 45):
            plan = self.plan(clean_shutdown=False,
                             request_timeout=request_timeout,
                             image_properties=_props('30'))
            self.assertFalse(plan.clean_requested)
            self.assertEqual('forced', plan.requested)
            self.assertEqual(0, plan.timeout)
            self.assertFalse(plan.attempt_clean)

    def test_zero_timeout_from_request_skips_clean_attempt(self):
        plan = self.plan(request_timeout=0, image_properties=_props('30'))
        self.assertEqual((0, 'request'), (plan.timeout, plan.source))
        self.assertEqual('clean', plan.requested)
        self.assertFalse(plan.attempt_clean)

    def test_zero_timeout_from_image_skips_clean_attempt(self):
        for value in ('0', 0):
            plan = self.plan(image_properties=_props(value))
            self.assertEqual((0, 'image'), (plan.timeout, plan.source))
            self.assertEqual('clean', plan.requested)
            self.assertFalse(plan.attempt_clean)

    def test_zero_timeout_from_config_skips_clean_attempt(self):
        plan = power_policy.plan_power_off(True, None, {}, 0)
        self.assertEqual((0, 'config'), (plan.timeout, plan.source))
        self.assertEqual('clean', plan.requested)
        self.assertFalse(plan.attempt_clean)
