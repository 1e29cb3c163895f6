"""Items: a document (the post or article the responses are about) and the original labels of an
imported comparison; both nullable, so every existing item stays as it was (NULL, NULL).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("document", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("original", sa.JSON(), nullable=True))


def downgrade() -> None:
    # plain DROP COLUMN (SQLite >= 3.35): a batch copy of `items` would cascade-delete its responses
    op.drop_column("items", "original")
    op.drop_column("items", "document")
