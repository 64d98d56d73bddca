"""Alembic's entry point. Migrations run only through ``tallystick.control.db.migrate``, which
hands over its connection (no ``alembic.ini``)."""

from alembic import context

from tallystick.control.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through tallystick.control.db.migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
