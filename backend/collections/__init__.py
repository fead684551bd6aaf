"""Collections: CRUD over your own tables with row rules, one filter language, change events."""
