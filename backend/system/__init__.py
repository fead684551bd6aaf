"""Liveness and readiness: is the process up, and can it serve (Postgres, Redis, migrations)."""
