"""Celery workers: the app, its tasks (embeddings, jobs, email, webhooks) and the beat schedule."""
