"""How a gate run says it failed."""


class GateFailure(Exception):
    """A check of a scenario run failed; the message says which."""


def expect(condition, message):
    if not condition:
        raise GateFailure(message)
