"""litebase_client: talk to a Litebase server from Python.

async with Litebase("http://127.0.0.1:8000") as lb:
    await lb.sign_in("ada@example.com", "correct horse battery")
    note = await lb.collection("notes").create({"title": "Hello"})
    async with lb.realtime() as live:
        async for event in live.subscribe("collection:notes"):
            print(event["op"], event["record"])
"""

from litebase_client.client import ApiError, Collection, Litebase
from litebase_client.realtime import Realtime, RealtimeError

__all__ = ["ApiError", "Collection", "Litebase", "Realtime", "RealtimeError"]
