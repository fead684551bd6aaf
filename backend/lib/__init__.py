"""Standalone helpers: nothing here imports the rest of Litebase."""
