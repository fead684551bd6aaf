"""The one SQLAlchemy metadata every Litebase table belongs to (advanced-alchemy's registry)."""

from __future__ import annotations

from advanced_alchemy.base import orm_registry
from sqlalchemy import MetaData

metadata: MetaData = orm_registry.metadata
