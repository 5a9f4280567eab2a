"""Local state in a SQLite file under state_path: instance records, the
action history of each instance, the snapshots of the image store and the
migration records.

Records are handed around as plain dicts in the wire contract's shape, so
nothing outside this module sees SQLAlchemy objects. State changes that
start an operation are compare-and-swap updates on ``task_state``: two
requests racing for one instance cannot both win.
"""

import datetime
import os

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy import orm

ANY = object()


class Base(orm.DeclarativeBase):
    pass


class Instance(Base):
    __tablename__ = 'instances'

    uuid: orm.Mapped[str] = orm.mapped_column(sa.String(36),
                                              primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    host: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    vm_state: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    task_state: orm.Mapped[str | None] = orm.mapped_column(sa.String(32))
    power_state: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    vcpus: orm.Mapped[int]
    memory_mb: orm.Mapped[int]
    image: orm.Mapped[dict] = orm.mapped_column(sa.JSON)
    last_power_off: orm.Mapped[dict | None] = orm.mapped_column(sa.JSON)
    snapshot_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(36))
    created_at: orm.Mapped[datetime.datetime]
    updated_at: orm.Mapped[datetime.datetime]

    def to_primitive(self):
        return {
            'uuid': self.uuid,
            'name': self.name,
            'host': self.host,
            'vm_state': self.vm_state,
            'task_state': self.task_state,
            'power_state': self.power_state,
            'flavor': {'vcpus': self.vcpus, 'memory_mb': self.memory_mb},
            'image': self.image,
            'last_power_off': self.last_power_off,
            'snapshot_id': self.snapshot_id,
        }


class InstanceAction(Base):
    __tablename__ = 'instance_actions'

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    instance_uuid: orm.Mapped[str] = orm.mapped_column(sa.String(36),
                                                       index=True)
    request_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    action: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    start_time: orm.Mapped[datetime.datetime]
    finish_time: orm.Mapped[datetime.datetime | None]
    result: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    power_off: orm.Mapped[dict | None] = orm.mapped_column(sa.JSON)
    message: orm.Mapped[str | None] = orm.mapped_column(sa.Text)

    def to_primitive(self):
        return {
            'id': self.id, 'request_id': self.request_id,
            'action': self.action,
            'start_time': _iso(self.start_time),
            'finish_time': _iso(self.finish_time),
            'result': self.result, 'power_off': self.power_off,
            'message': self.message,
        }


class Snapshot(Base):
    __tablename__ = 'snapshots'

    id: orm.Mapped[str] = orm.mapped_column(sa.String(36), primary_key=True)
    instance_uuid: orm.Mapped[str] = orm.mapped_column(sa.String(36))
    path: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    size: orm.Mapped[int | None]
    source_image: orm.Mapped[dict] = orm.mapped_column(sa.JSON)
    created_at: orm.Mapped[datetime.datetime]

    def to_primitive(self):
        return {'id': self.id, 'instance_uuid': self.instance_uuid,
                'path': self.path, 'size': self.size,
                'source_image': self.source_image,
                'created_at': _iso(self.created_at)}


class Migration(Base):
    """One live or cold migration (or resize) as this host saw it. Both
    ends keep a record under the same id; the host that runs the flow
    (the source of a live migration, the destination of a cold one)
    writes its status and progress."""

    __tablename__ = 'migrations'

    id: orm.Mapped[str] = orm.mapped_column(sa.String(36), primary_key=True)
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    instance_uuid: orm.Mapped[str] = orm.mapped_column(sa.String(36),
                                                       index=True)
    source_host: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    dest_host: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    status: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    request_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    details: orm.Mapped[dict] = orm.mapped_column(sa.JSON,
                                                  default=lambda: {})
    progress: orm.Mapped[dict | None] = orm.mapped_column(sa.JSON)
    message: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    created_at: orm.Mapped[datetime.datetime]
    updated_at: orm.Mapped[datetime.datetime]
    finished_at: orm.Mapped[datetime.datetime | None]

    def to_primitive(self):
        return {
            'id': self.id, 'kind': self.kind,
            'instance_uuid': self.instance_uuid,
            'source_host': self.source_host, 'dest_host': self.dest_host,
            'status': self.status, 'request_id': self.request_id,
            'details': self.details, 'progress': self.progress,
            'message': self.message,
            'created_at': _iso(self.created_at),
            'updated_at': _iso(self.updated_at),
            'finished_at': _iso(self.finished_at),
        }


def _iso(moment):
    return None if moment is None else moment.isoformat() + 'Z'


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class Database:
    def __init__(self, path):
        if path != ':memory:':
            os.makedirs(os.path.dirname(os.path.abspath(path)),
                        exist_ok=True)
        self._engine = sa.create_engine(
            f'sqlite:///{path}',
            connect_args={'check_same_thread': False, 'timeout': 30})
        Base.metadata.create_all(self._engine)
        self._add_missing_columns()
        self._session = orm.sessionmaker(self._engine,
                                         expire_on_commit=False)

    def _add_missing_columns(self):
        """Bring a database written by an older agent up to date:
        create_all() adds new tables but not new columns."""
        inspector = sa.inspect(self._engine)
        for table in Base.metadata.sorted_tables:
            present = {c['name'] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present and column.nullable:
                    kind = column.type.compile(self._engine.dialect)
                    with self._engine.begin() as connection:
                        connection.execute(sa.text(
                            f'ALTER TABLE {table.name} ADD COLUMN '
                            f'{column.name} {kind}'))

    def create_instance(self, **values):
        """Insert a record; None when the uuid is already taken.

        The insert is the check: of two requests racing with one uuid,
        SQLite lets exactly one row in and reports the other's insert as
        a conflict (a read first would let both pass it).
        """
        now = _now()
        insert = sqlite.insert(Instance).values(
            created_at=now, updated_at=now, **values).on_conflict_do_nothing(
                index_elements=[Instance.uuid])
        with self._session.begin() as session:
            if session.execute(insert).rowcount != 1:
                return None
            return session.get(Instance, values['uuid']).to_primitive()

    def put_instance(self, **values):
        """Insert or replace a record: an instance arriving by migration
        may have lived here before."""
        return self._put(Instance, values['uuid'], values, _now())

    def _put(self, model, key, values, now):
        """Insert the record of model with primary key key, or update the
        one there; stamp it updated at now."""
        with self._session.begin() as session:
            record = session.get(model, key)
            if record is None:
                record = model(created_at=now, **values)
                session.add(record)
            else:
                for name, value in values.items():
                    setattr(record, name, value)
            record.updated_at = now
            session.flush()
            return record.to_primitive()

    def get_instance(self, uuid):
        with self._session() as session:
            record = session.get(Instance, uuid)
            return record.to_primitive() if record else None

    def list_instances(self, host, include_deleted=False):
        query = sa.select(Instance).where(Instance.host == host)
        if not include_deleted:
            query = query.where(Instance.vm_state != 'deleted')
        with self._session() as session:
            records = session.scalars(query.order_by(Instance.created_at))
            return [record.to_primitive() for record in records]

    def list_interrupted(self, host):
        """Records an earlier process left in the middle of an operation."""
        query = sa.select(Instance).where(Instance.host == host,
                                          Instance.task_state.is_not(None))
        with self._session() as session:
            return [r.to_primitive() for r in session.scalars(query)]

    def update_instance(self, uuid, expected_task_state=ANY, **values):
        """Update a record; None when it is gone or the task state moved.

        With expected_task_state given, the update happens only if the
        record's task_state still has that value (None included).
        """
        query = sa.update(Instance).where(Instance.uuid == uuid)
        if expected_task_state is not ANY:
            query = query.where(
                Instance.task_state.is_(None) if expected_task_state is None
                else Instance.task_state == expected_task_state)
        values['updated_at'] = _now()
        with self._session.begin() as session:
            if session.execute(query.values(**values)).rowcount != 1:
                return None
            return session.get(Instance, uuid).to_primitive()

    # -- actions ---------------------------------------------------------

    def start_action(self, instance_uuid, request_id, action):
        with self._session.begin() as session:
            record = InstanceAction(
                instance_uuid=instance_uuid, request_id=request_id,
                action=action, start_time=_now(), result='running')
            session.add(record)
            session.flush()
            return record.id

    def finish_action(self, action_id, result, power_off=None,
                      message=None):
        with self._session.begin() as session:
            record = session.get(InstanceAction, action_id)
            record.finish_time = _now()
            record.result = result
            record.power_off = power_off
            record.message = message

    def list_open_actions(self):
        """Actions not yet finished, each with its instance_uuid."""
        query = (sa.select(InstanceAction)
                 .where(InstanceAction.finish_time.is_(None))
                 .order_by(InstanceAction.id))
        with self._session() as session:
            return [dict(r.to_primitive(), instance_uuid=r.instance_uuid)
                    for r in session.scalars(query)]

    def list_actions(self, instance_uuid):
        query = (sa.select(InstanceAction)
                 .where(InstanceAction.instance_uuid == instance_uuid)
                 .order_by(InstanceAction.id))
        with self._session() as session:
            return [r.to_primitive() for r in session.scalars(query)]

    # -- snapshots -------------------------------------------------------

    def create_snapshot(self, **values):
        with self._session.begin() as session:
            record = Snapshot(created_at=_now(), **values)
            session.add(record)
            session.flush()
            return record.to_primitive()

    def get_snapshot(self, snapshot_id):
        with self._session() as session:
            record = session.get(Snapshot, snapshot_id)
            return record.to_primitive() if record else None

    def list_snapshot_ids(self, instance_uuid):
        with self._session() as session:
            return list(session.scalars(
                sa.select(Snapshot.id).where(
                    Snapshot.instance_uuid == instance_uuid)))

    def delete_snapshot(self, snapshot_id):
        with self._session.begin() as session:
            record = session.get(Snapshot, snapshot_id)
            if record is not None:
                session.delete(record)

    # -- migrations ------------------------------------------------------

    def put_migration(self, **values):
        """Insert or update the record with values['id']."""
        now = _now()
        if values.get('status') in FINAL_MIGRATION_STATES:
            values['finished_at'] = now
        return self._put(Migration, values['id'], values, now)

    def update_migration(self, migration_id, expected_status=ANY, **values):
        """Update a record; None when it is gone or its status is not
        expected_status (one of them, when a tuple)."""
        query = sa.update(Migration).where(Migration.id == migration_id)
        if expected_status is not ANY:
            allowed = expected_status if isinstance(expected_status, tuple) \
                else (expected_status,)
            query = query.where(Migration.status.in_(allowed))
        values['updated_at'] = _now()
        if values.get('status') in FINAL_MIGRATION_STATES:
            values['finished_at'] = values['updated_at']
        with self._session.begin() as session:
            if session.execute(query.values(**values)).rowcount != 1:
                return None
            return session.get(Migration, migration_id).to_primitive()

    def get_migration(self, migration_id):
        with self._session() as session:
            record = session.get(Migration, migration_id)
            return record.to_primitive() if record else None

    def list_migrations(self, instance_uuid=None, statuses=None):
        query = sa.select(Migration)
        if instance_uuid is not None:
            query = query.where(Migration.instance_uuid == instance_uuid)
        if statuses is not None:
            query = query.where(Migration.status.in_(statuses))
        with self._session() as session:
            return [r.to_primitive() for r in session.scalars(
                query.order_by(Migration.created_at))]


# Statuses that stamp finished_at: the flow ran to an end (a completed
# resize still moves on to confirmed or reverted, and is stamped again).
FINAL_MIGRATION_STATES = frozenset(
    ['completed', 'failed', 'cancelled', 'error', 'confirmed', 'reverted'])
