"""The vm_state values of the wire contract's instance record."""

ACTIVE, STOPPED, BUILDING, ERROR, DELETED = (
    'active', 'stopped', 'building', 'error', 'deleted')
RESCUED, SHELVED, SHELVED_OFFLOADED = (
    'rescued', 'shelved', 'shelved_offloaded')
# On the destination: the migrated guest, until confirmed or reverted;
# on the source: the original kept meanwhile, handed over.
RESIZED = 'resized'
