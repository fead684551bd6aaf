"""Auth: users, sessions with rotating refresh tokens, API keys and the email flows."""
