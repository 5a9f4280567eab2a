"""Hostile values for the bad-input suite, as hypothesis strategies.

Each strategy produces values that one kind of argument must refuse:
strings built to break XML, paths and shells, control characters, huge
strings, and every JSON type where another one belongs.
"""

import uuid

from hypothesis import strategies as st

XML_BREAKERS = (
    '</name><devices>', '<name>x</name>', '&', '&amp;', '&#0;', ']]>',
    '<![CDATA[', '"\'><', '<?xml version="1.0"?>',
    '<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>&e;',
)
PATHS = (
    '../../etc/passwd', '/etc/passwd', '/etc/shadow', '..', '.', '/',
    'a/../../b', 'nul\x00byte', '/dev/zero', '~root', '\\..\\..\\x',
)
SHELLS = (
    '$(reboot)', '; reboot', '`reboot`', '| cat /etc/passwd',
    '&& rm -rf /', '$IFS', '%s%n%x', '{0.__class__}', '%(host)s',
)
# C0 controls, DEL, line separators, a byte-order mark and a lone
# surrogate (not representable in UTF-8).
CONTROL = (
    '\x00', 'a\nb', '\r\n', '\x1b[2J', '\x7f', '\u2028', '\ufeff',
    '\ud800', 'tab\there', 'vt\x0b', 'bell\x07',
)
HOSTILE = XML_BREAKERS + PATHS + SHELLS + CONTROL
# Just over the limits the contract sets (4 KiB texts, 1 MiB XML) and
# far over the rest.
HUGE_LENGTHS = (256, 4097, 65537, (1 << 20) + 1)


def huge_strings():
    return st.sampled_from(HUGE_LENGTHS).map(lambda length: 'A' * length)


def control_strings():
    """Strings holding a character that no name may hold."""
    return st.builds(lambda head, bad, tail: head + bad + tail,
                     st.text(max_size=8), st.sampled_from(CONTROL),
                     st.text(max_size=8))


def hostile_strings():
    return st.one_of(
        st.sampled_from(HOSTILE), huge_strings(), control_strings(),
        st.builds(lambda text, hostile: text + hostile,
                  st.text(max_size=16), st.sampled_from(HOSTILE)),
        st.text(max_size=40))


def scalars():
    return st.one_of(
        st.none(), st.booleans(),
        st.integers(min_value=-(1 << 70), max_value=1 << 70),
        st.sampled_from((0, -1, 1 << 63, -(1 << 64))),
        st.floats(allow_nan=True, allow_infinity=True))


def containers():
    keys = st.text(max_size=12)
    return st.one_of(
        st.lists(scalars(), max_size=4),
        st.dictionaries(keys, scalars(), max_size=4),
        st.recursive(scalars(), lambda inner: st.lists(inner, max_size=2) |
                     st.dictionaries(keys, inner, max_size=2),
                     max_leaves=8))


def junk():
    """Any JSON value, hostile strings included."""
    return st.one_of(scalars(), hostile_strings(), containers())


def non_strings():
    return st.one_of(scalars(), containers())


def non_booleans():
    return st.one_of(
        st.none(), st.integers(), st.floats(), hostile_strings(),
        st.sampled_from(('true', 'false', 'True', '1', '0', '')),
        containers())


def not_uuids(allow_none=False):
    """Anything but a UUID string (None too, unless it means 'any')."""
    values = st.one_of(
        hostile_strings(), non_strings(),
        st.uuids().map(lambda value: str(value) + '\x00'),
        st.uuids().map(lambda value: ' ' + str(value)),
        st.uuids().map(lambda value: str(value)[:-1]))
    if allow_none:
        values = values.filter(lambda value: value is not None)
    return values.filter(lambda value: not _is_uuid(value))


def _is_uuid(value):
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def random_uuids():
    return st.uuids().map(str)


def bad_timeouts():
    """Not None and not a whole number of seconds >= 0."""
    return st.one_of(
        st.integers(max_value=-1), st.floats(), st.booleans(),
        hostile_strings(), containers(), st.sampled_from(('10', '1e3')))


def bad_positive_ints(minimum=1):
    return st.one_of(
        st.integers(max_value=minimum - 1), st.floats(), st.booleans(),
        st.none(), hostile_strings(), containers())


def bad_names():
    """What no instance name may be: not a string, blank, too long, or
    holding a control character."""
    return st.one_of(
        non_strings(), st.sampled_from(('', '   ', '\t')),
        st.integers(min_value=256, max_value=5000).map(lambda n: 'n' * n),
        control_strings())


def bad_hosts():
    """What no host name may be."""
    return st.one_of(
        non_strings(), st.sampled_from(('', ' ', ' host', 'host ')),
        st.just('h' * 256))
