"""The agent's local image store: shelve snapshots under
state_path/images, one record each in the local database."""

import os
import uuid


class ImageStore:
    def __init__(self, path, database):
        self._path = path
        self._db = database

    def new_snapshot(self):
        """Allocate (id, path) for a snapshot about to be written."""
        snapshot_id = str(uuid.uuid4())
        return snapshot_id, os.path.join(self._path, f'{snapshot_id}.qcow2')

    def record(self, snapshot_id, instance_uuid, path, size, source_image):
        """Record a written snapshot; path and size are None when the
        guest had no disk to snapshot (its image is the source image)."""
        return self._db.create_snapshot(
            id=snapshot_id, instance_uuid=instance_uuid, path=path,
            size=size, source_image=source_image)

    def get(self, snapshot_id):
        return self._db.get_snapshot(snapshot_id)

    def delete_all_of(self, instance_uuid):
        """Every snapshot of the instance, also one its record never
        named (a shelve killed between the snapshot and its commit)."""
        for snapshot_id in self._db.list_snapshot_ids(instance_uuid):
            self.delete(snapshot_id)

    def delete(self, snapshot_id):
        snapshot = self._db.get_snapshot(snapshot_id)
        if snapshot is None:
            return
        if snapshot['path']:
            try:
                os.unlink(snapshot['path'])
            except FileNotFoundError:
                pass
        self._db.delete_snapshot(snapshot_id)
