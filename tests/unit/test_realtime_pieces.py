from backend.realtime.changes import RecentIds
from backend.realtime.fanout import BoundedSubscriber
from backend.realtime.protocol import AuthFrame, SubscribeFrame, decode_client_frame


def test_recent_ids_remember_a_bounded_window():
    seen = RecentIds(3)
    for i in range(5):
        seen.add(i)
    assert 1 not in seen and {2, 3, 4} == {i for i in range(5) if i in seen}


def test_client_frames_decode_by_type():
    assert decode_client_frame('{"type": "auth", "token": "t"}') == AuthFrame(token="t")
    frame = decode_client_frame(
        '{"type": "subscribe", "id": "s1", "channel": "collection:notes", "since": 5}'
    )
    assert frame == SubscribeFrame(id="s1", channel="collection:notes", since=5)


class _Plugin:
    _backend = None


async def test_a_full_subscriber_says_it_overflowed_instead_of_dropping_quietly():
    subscriber = BoundedSubscriber(plugin=_Plugin(), max_backlog=2)
    told: list[str] = []
    subscriber.on_overflow = lambda: told.append("too slow")
    assert subscriber.put_nowait(b"1") and subscriber.put_nowait(b"2")
    assert not subscriber.overflowed.is_set()
    assert subscriber.put_nowait(b"3") is False
    assert subscriber.put_nowait(b"4") is False
    assert subscriber.overflowed.is_set()
    assert told == ["too slow"]  # once, at the moment it overflows
