"""Database: the shared metadata, engine configuration and Alembic migrations."""
