"""Change events: the outbox relay and the consumers it feeds (realtime, vectors, webhooks)."""
