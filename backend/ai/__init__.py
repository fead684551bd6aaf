"""The model gateway: OpenAI-compatible endpoints over operator-configured providers, with
budgets and usage per user, key and org (docs/ai.md)."""
