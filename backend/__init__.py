"""Litebase: an AI-native backend-as-a-service template."""

__version__ = "0.1.0"
