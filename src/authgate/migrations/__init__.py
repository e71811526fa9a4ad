"""Alembic migration environment for AuthGate (run through ``authgate db upgrade``)."""
