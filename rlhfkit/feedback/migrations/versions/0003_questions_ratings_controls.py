"""Ratings and quality control: an item's question (NULL: compare the responses; or a rating of a single
response, thumbs or Likert axes), an annotation's rating, a project's control-item rate and the control
accuracy below which an annotator is flagged. All nullable or defaulted, so every existing row stays as
it was (a comparison item, no rating, no controls mixed in, no flag).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


# Plain ADD / DROP COLUMN, never a batch table copy: on SQLite (with foreign keys on) a batch operation
# drops and recreates the table, and dropping `projects` or `items` would cascade-delete their rows.
# SQLite runs DROP COLUMN natively since 3.35.


def upgrade() -> None:
    op.add_column("items", sa.Column("question", sa.JSON(), nullable=True))
    op.add_column("annotations", sa.Column("rating", sa.JSON(), nullable=True))
    op.add_column("projects", sa.Column("control_rate", sa.Float(), nullable=False, server_default="0"))
    op.add_column("projects", sa.Column("min_control_accuracy", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("projects", "min_control_accuracy")
    op.drop_column("projects", "control_rate")
    op.drop_column("annotations", "rating")
    op.drop_column("items", "question")
