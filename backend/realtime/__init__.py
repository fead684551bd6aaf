"""Realtime: WebSocket channels of rule-filtered collection changes, with resume."""
