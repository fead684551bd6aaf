"""Outgoing mail: queued by the API, delivered by a Celery worker through a backend."""
