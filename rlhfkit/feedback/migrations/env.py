"""Alembic environment for the feedback store.

rlhfkit runs migrations from Python (`rlhfkit.feedback.db.upgrade`), handing over an open connection in
``config.attributes["connection"]``. To write a new revision by hand, see ``README`` in this folder.
"""

from alembic import context

from rlhfkit.feedback.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through rlhfkit.feedback.db.upgrade(), which passes a connection")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
