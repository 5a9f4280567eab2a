"""Every scenario the gate runs, in report order."""

from tools.gate import guest_agent_scenarios
from tools.gate import host_scenarios
from tools.gate import migration_scenarios
from tools.gate import scenarios
from tools.gate import signal_scenarios

SCENARIOS = (scenarios.SCENARIOS + migration_scenarios.SCENARIOS
             + signal_scenarios.SCENARIOS
             + guest_agent_scenarios.SCENARIOS
             + host_scenarios.SCENARIOS)


def by_name():
    names = [scenario.name for scenario in SCENARIOS]
    assert len(set(names)) == len(names), f'duplicate names: {names}'
    return {scenario.name: scenario for scenario in SCENARIOS}
