"""Helpers for the failure suites: raw sends whose reply keys a test reads itself.

``client.call`` also polls ``describe()`` once a second, so a failure it reports may have come
from either path; these read only the reply key, which the worker must write.
"""

from __future__ import annotations

from typing import Any

from mvactors.cluster import Client
from mvactors.cluster.keys import ActorKeys
from mvactors.cluster.wire import ReplyPayload, message_payload

from .processes import eventually


async def send_wanting_reply(client: Client, actor_id: str, message_id: str, export_id: int, *args: Any) -> None:
    """Put a call in the actor's mailbox (as ``client.call`` does) without waiting for its reply."""
    k = ActorKeys.of(actor_id)
    result = await client.redis.fcall("mva_send", 6, k.state, k.lease, k.mailbox, k.dedupe, k.work,  # type: ignore[misc]
                                      k.ready, actor_id, message_id, message_payload(export_id, args, True))
    assert result[0] == b"OK", result


async def reply_of(client: Client, actor_id: str, message_id: str, timeout: float) -> ReplyPayload:
    """The payload written to the call's reply key (AssertionError after ``timeout`` seconds)."""
    key = ActorKeys.of(actor_id).reply(message_id)

    async def written() -> ReplyPayload | None:
        got: Any = await client.redis.xread({key: "0-0"}, count=1, block=1000)
        if not got:
            return None
        entries = got[0][1] if isinstance(got, list) else next(iter(got.values()))[0]
        return ReplyPayload.decode(entries[0][1][b"v"])

    return await eventually(written, timeout, f"a reply at {key}")  # type: ignore[no-any-return]
