"""Vector search over collections: embedding providers, chunking, sync and search."""

EMBED_TASK = "vectors.embed"
REINDEX_TASK = "vectors.reindex"
RETRY_FAILED_TASK = "vectors.retry_failed"
