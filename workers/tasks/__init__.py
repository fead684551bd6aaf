"""Celery tasks: thin wrappers that take ids and small values and call a service."""
