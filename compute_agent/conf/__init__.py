"""Configuration: one module per option group, all registered on CONF."""

from oslo_config import cfg

from compute_agent.conf import compute
from compute_agent.conf import default
from compute_agent.conf import libvirt
from compute_agent.conf import metrics
from compute_agent.conf import reload
from compute_agent.conf import upgrade_levels

CONF = cfg.CONF

default.register_opts(CONF)
compute.register_opts(CONF)
libvirt.register_opts(CONF)
metrics.register_opts(CONF)
upgrade_levels.register_opts(CONF)
# SIGHUP applies default_log_levels too; done at import so that the
# generated sample says so.
reload.make_log_levels_mutable()
