"""Background jobs: the job row in Postgres is the truth; Celery only carries the work."""
