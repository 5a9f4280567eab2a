"""The vm_state values of the wire contract's instance record."""

ACTIVE, STOPPED, BUILDING, ERROR, DELETED = (
    'active', 'stopped', 'building', 'error', 'deleted')
RESCUED, SHELVED, SHELVED_OFFLOADED = (
    'rescued', 'shelved', 'shelved_offloaded')
