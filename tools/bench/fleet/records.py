"""The agents' own records, read from their SQLite files after the run.

The files are opened read-only, once every agent has exited, so nothing
here can change what is judged. Tables and columns are those of
compute_agent/db.py.
"""

import collections
import sqlite3

from tools.bench.fleet import accounting


def _rows(path, query):
    connection = sqlite3.connect(f'file:{path}?mode=ro', uri=True)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def read_evidence(databases):
    """{kind: Counter((host, key) -> records)} over {host: sqlite path}."""
    evidence = {kind: collections.Counter() for kind in (
        accounting.ACTIONS, accounting.MIGRATIONS, accounting.CONFIRMED)}
    for host, path in databases.items():
        for (request_id,) in _rows(
                path, 'SELECT request_id FROM instance_actions '
                      'WHERE request_id IS NOT NULL'):
            evidence[accounting.ACTIONS][host, request_id] += 1
        for migration_id, request_id, source, dest, status in _rows(
                path, 'SELECT id, request_id, source_host, dest_host, '
                      'status FROM migrations'):
            # Both ends keep the record; each request counts on its host.
            if dest == host and request_id is not None:
                evidence[accounting.MIGRATIONS][host, request_id] += 1
            if source == host and status == 'confirmed':
                evidence[accounting.CONFIRMED][host, migration_id] += 1
    return evidence
