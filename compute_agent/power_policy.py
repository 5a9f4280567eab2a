"""Which shutdown timeout applies to a power-off, and why.

Precedence: the request's shutdown_timeout, else the image property
os_shutdown_timeout when it is a valid whole number of seconds, else
[DEFAULT] shutdown_timeout. A forced request skips the clean attempt.
"""

import dataclasses
import logging

LOG = logging.getLogger(__name__)

IMAGE_PROPERTY = 'os_shutdown_timeout'


@dataclasses.dataclass(frozen=True)
class PowerOffPlan:
    clean_requested: bool
    timeout: int
    source: str   # where timeout came from: 'request', 'image' or 'config'

    @property
    def requested(self):
        return 'clean' if self.clean_requested else 'forced'

    @property
    def attempt_clean(self):
        """A timeout of 0 means the guest gets no chance: destroy at once."""
        return self.clean_requested and self.timeout > 0


def plan_power_off(clean_shutdown, request_timeout, image_properties,
                   config_timeout, instance_uuid=None):
    """Return the PowerOffPlan for one power-off.

    request_timeout has been validated already; an invalid image property
    is the image owner's mistake, so it is logged and ignored rather than
    failing the operation.
    """
    if request_timeout is not None:
        timeout, source = request_timeout, 'request'
    else:
        timeout, source = config_timeout, 'config'
        image_timeout = _image_timeout(image_properties, instance_uuid)
        if image_timeout is not None:
            timeout, source = image_timeout, 'image'
    if not clean_shutdown:
        return PowerOffPlan(clean_requested=False, timeout=0,
                            source='request')
    return PowerOffPlan(clean_requested=True, timeout=timeout, source=source)


def _image_timeout(properties, instance_uuid):
    raw = (properties or {}).get(IMAGE_PROPERTY)
    if raw is None:
        return None
    try:
        value = int(str(raw).strip(), 10)
    except ValueError:
        value = -1
    if value < 0 or isinstance(raw, (bool, float)):
        LOG.warning('Ignoring image property %s=%r of instance %s: not a '
                    'whole number of seconds >= 0', IMAGE_PROPERTY, raw,
                    instance_uuid)
        return None
    return value
