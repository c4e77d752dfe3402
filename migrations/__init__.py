"""The hub's own Alembic history (``hub.schema``); shipped with the hub."""
