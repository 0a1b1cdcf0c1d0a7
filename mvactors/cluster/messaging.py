"""``Messaging``: a client's connection to Redis, and the calls every client makes: spawn, send,
call, describe and delete (the rest of :class:`~.client.Client` builds on these).
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
import uuid
from typing import Any, Self

from ..actors import ActorRecord, GasPolicy
from ..errors import Cancelled, GuestError
from ..vm import SnapshotLike
from ..vm.snapshot import check_size, snapshot_bytes
from .deployment import check_deployment
from .errors import (
    ActorExistsInRedis,
    ActorFailedInRedis,
    ActorNotFound,
    NotReplicated,
    RedisOutOfMemory,
    RedisUnreachable,
)
from .keys import (
    HINT_FREE,
    ActorKeys,
    hint_key,
)
from .link import Redis, RedisLink
from .wire import (
    REPLY_CANCELLED,
    REPLY_GUEST_ERROR,
    REPLY_OK,
    REPLY_UNSENDABLE,
    Described,
    ReplyPayload,
    SendReply,
    delete_args,
    encode_gas,
    message_payload,
    spawn_args,
    spawned,
    stored_record,
)

_WAIT_SLICE_MS = 1000  # a call's blocking read returns this often to see whether the actor failed
DEDUPE_WINDOW_MS = 24 * 3600 * 1000  # default: a message_id sent again within a day is not applied twice



class Messaging:
    """Connection, primitives and messages (a base of :class:`~.client.Client`)."""

    def __init__(self, url: str, replica_acks: int = 0, dedupe_window_ms: int = DEDUPE_WINDOW_MS) -> None:
        if not isinstance(replica_acks, int) or isinstance(replica_acks, bool) or replica_acks < 0:
            raise ValueError(f"replica_acks must be an int >= 0, not {replica_acks!r}")
        if not isinstance(dedupe_window_ms, int) or isinstance(dedupe_window_ms, bool) or dedupe_window_ms < 1000:
            raise ValueError(f"dedupe_window_ms must be an int of at least 1000, not {dedupe_window_ms!r}")
        self.url = url
        self.replica_acks = replica_acks
        self.dedupe_window_ms = dedupe_window_ms
        self._link: RedisLink | None = None

    async def __aenter__(self) -> Self:
        # Every waiting call holds a blocking connection: up to 1,000 at once.
        self._link = RedisLink(self.url, blocking_timeout=_WAIT_SLICE_MS / 1000 + 10, blocking_connections=1000,
                               replica_acks=self.replica_acks)
        try:
            link = self._link
            # Eviction only: what a redis-server crash loses is the workers' to warn about.
            await link.guarded(lambda: check_deployment(link.redis, warn_persistence=False))
            await link.load_functions()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (also done by ``async with``)."""
        if self._link is not None:
            await self._link.aclose()
        self._link = None

    @property
    def link(self) -> RedisLink:
        if self._link is None:
            raise RuntimeError("the client is not connected; use `async with mvactors.connect(url) as client:`")
        return self._link

    @property
    def redis(self) -> Redis:
        """The connection pool for plain requests (for tools and tests)."""
        return self.link.redis

    async def _fcall(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self.link.fcall(name, [len(keys), *keys, *args])

    async def _acked_fcall(self, tag: str, name: str, keys: list[str], args: list[Any]) -> Any:
        """``FCALL`` that returns once ``replica_acks`` replicas hold what it wrote and read (one attempt)."""
        if not self.replica_acks:
            return await self._fcall(name, keys, args)
        link = self.link

        async def once() -> Any:
            [result] = await link.acked(tag, lambda pipe: pipe.fcall(name, len(keys), *keys, *args))
            if isinstance(result, Exception):
                raise result
            return result
        return await link.guarded(once)

    async def _write(self, tag: str, name: str, flat: list[Any]) -> Any:
        """An operation's ``FCALL`` (``flat``: numkeys, keys..., arguments...) on partition ``tag``: with
        ``replica_acks``, it returns once that many replicas hold it, like a send.  One attempt: after
        :class:`NotReplicated` the operation ran on the master, and ``describe()`` (which waits for the
        replicas too) tells whether it holds once they catch up."""
        return await self._acked_fcall(tag, name, flat[1:1 + flat[0]], flat[1 + flat[0]:])

    async def _describe(self, keys: ActorKeys) -> Described | None:
        return Described.decode(await self._acked_fcall(keys.tag, "mva_describe",
                                                        [keys.state, keys.lease, keys.mailbox], []))

    # ---- the contract ----

    async def spawn(self, snapshot: SnapshotLike, imports: str | None = None, actor_id: str | None = None,
                    gas: GasPolicy | None = None, history: int = 0) -> str:
        """Store a new actor (no guest code runs until its first message); returns its ID.

        ``snapshot`` is anything :meth:`VM.restore` takes: bytes, or a snapshot file's path.

        ``imports`` names an import table every worker has (``None``: no imports).
        ``history`` keeps the last K turns (see :meth:`history`); 0 keeps none.
        An ``actor_id`` that is already stored raises ActorExistsInRedis.
        """
        if imports is not None and not isinstance(imports, str):
            raise TypeError(f"imports= names a worker import table (a str), not {type(imports).__name__}")
        if not isinstance(history, int) or isinstance(history, bool) or history < 0:
            raise ValueError(f"history must be a non-negative int (turns to keep), not {history!r}")
        if actor_id is None:
            actor_id = uuid.uuid4().hex
        elif not isinstance(actor_id, str) or not actor_id:
            raise TypeError("actor_id must be a non-empty str")
        data = snapshot_bytes(snapshot)  # what VM.restore takes: bytes, ints or a file's path
        check_size(data)  # the rest is checked by the worker's restore, which fails the actor saying why
        keys = ActorKeys.of(actor_id)
        code = hashlib.sha256(data).hexdigest()
        flat = spawn_args(keys, data, imports or "", encode_gas(gas), code, history)
        result = await self._acked_fcall(keys.tag, "mva_spawn", flat[1:1 + flat[0]], flat[1 + flat[0]:])
        if not spawned(result):
            raise ActorExistsInRedis(f"an actor with ID {actor_id!r} already exists")
        return actor_id

    async def send(self, actor_id: str, export_id: int, *args: Any, message_id: str | None = None) -> str:
        """Append a message to the actor's mailbox; returns once Redis has it durably (its message ID).

        Sending again with the same ``message_id`` within the client's ``dedupe_window_ms`` (24 h
        by default; counted from when Redis first accepted it) does not apply it twice; once the
        window has passed it may be applied again (IDs older than the window are forgotten at the
        actor's next accepted send).  With ``replica_acks=N`` it returns once N replicas hold it.

        Raises ActorNotFound, ActorFailedInRedis, RedisOutOfMemory (Redis is full: nothing was
        written), NotReplicated (fewer than N replicas confirmed in time: send again with the same
        ``message_id``) or RedisUnreachable (it may or may not have been accepted: send again with
        the same ``message_id``).
        """
        return await self._send(actor_id, export_id, args, message_id, reply=False)

    async def call(self, actor_id: str, export_id: int, *args: Any, timeout: float | None = None,
                   message_id: str | None = None) -> Any:
        """Send a message and wait for the turn's result (a copied Python value).

        Raises GuestError when the guest throws, TimeoutError after ``timeout`` seconds,
        ActorFailedInRedis when the actor fails, RedisUnreachable when Redis does not answer.
        """
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0 or math.isnan(timeout)):
            raise ValueError(f"timeout must be a non-negative number of seconds or None, not {timeout!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        message_id = await self._send(actor_id, export_id, args, message_id, reply=True)
        keys = ActorKeys.of(actor_id)
        reply_key = keys.reply(message_id)
        link = self.link
        while True:
            block = _WAIT_SLICE_MS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"actor {actor_id!r} did not answer message {message_id} within {timeout}s")
                block = max(1, min(block, int(left * 1000)))
            read = functools.partial(link.blocking.xread, {reply_key: "0-0"}, count=1, block=block)
            got: Any = await link.guarded(read)
            if got:
                entries = got[0][1] if isinstance(got, list) else next(iter(got.values()))[0]
                await link.guarded(lambda: link.redis.delete(reply_key))
                return self._result(actor_id, ReplyPayload.decode(entries[0][1][b"v"]))
            info = await self._describe(keys)
            if info is None:
                raise ActorNotFound(f"actor {actor_id!r} was deleted before it answered")
            if info.failed:
                raise ActorFailedInRedis(actor_id, info.failed)

    @staticmethod
    def _result(actor_id: str, reply: ReplyPayload) -> Any:
        status, value = reply
        if status == REPLY_OK:
            return value
        if status == REPLY_GUEST_ERROR:
            raise GuestError(value)
        if status == REPLY_CANCELLED:
            raise Cancelled(f"actor {actor_id!r}: {value}")
        if status == REPLY_UNSENDABLE:
            raise TypeError(f"actor {actor_id!r} returned a value that cannot cross processes: {value}")
        raise ActorFailedInRedis(actor_id, str(value))

    async def _send(self, actor_id: str, export_id: int, args: tuple[Any, ...], message_id: str | None,
                    reply: bool) -> str:
        if not isinstance(export_id, int) or isinstance(export_id, bool):
            raise TypeError(f"export_id must be an int, not {type(export_id).__name__}")
        if message_id is None:
            message_id = uuid.uuid4().hex
        elif not isinstance(message_id, str) or not message_id:
            raise TypeError("message_id must be a non-empty str")
        payload = message_payload(export_id, args, reply)  # TypeError for unsupported arguments, before Redis
        keys = ActorKeys.of(actor_id)
        try:
            result = await self._acked_fcall(keys.tag, "mva_send", [keys.state, keys.lease, keys.mailbox, keys.dedupe,
                                                                    keys.work, keys.ready],
                                             [actor_id, message_id, payload, self.dedupe_window_ms])
        except NotReplicated as exc:
            raise NotReplicated(f"message {message_id} to actor {actor_id!r}: {exc}", message_id) from exc
        sent = SendReply.decode(result)
        if sent.status == "UNKNOWN":
            raise ActorNotFound(f"no actor {actor_id!r} in Redis at {self.url}")
        if sent.status == "FAILED":
            raise ActorFailedInRedis(actor_id, sent.reason)
        # A wake-up hint only: workers also find the mail by polling the work index.
        hint = hint_key(sent.owner) if sent.owner else HINT_FREE
        redis = self.redis
        try:
            await self.link.guarded(lambda: redis.xadd(hint, {"a": actor_id}, maxlen=64, approximate=True))
        except (RedisOutOfMemory, RedisUnreachable):
            pass  # the message is in; the workers' scan of the work index finds it without the hint
        return message_id

    async def describe(self, actor_id: str) -> dict[str, Any]:
        """The actor as Redis has it.

        ``owner`` (worker ID or None), ``turns`` committed, ``mailbox`` (messages not yet applied),
        ``imports``, ``failed`` (reason or None), ``epoch`` (fencing token), ``state`` ("idle",
        "running", "paused" or "failed"), ``paused`` (None or {"reason": "gas" | "operator",
        "since": unix seconds, "detail": str}), ``code`` (hex SHA-256 of the snapshot it runs),
        ``history`` (turns kept) and ``last_failure`` (None or {"at", "message_id", "export",
        "error", "awaited"}: the last turn that failed, awaited or not).
        """
        info = await self._describe(ActorKeys.of(actor_id))
        if info is None:
            raise ActorNotFound(f"no actor {actor_id!r} in Redis at {self.url}")
        return info.public()

    async def delete(self, actor_id: str) -> None:
        """Remove the actor, its mailbox and journal; a worker running it drops it at its next commit."""
        keys = ActorKeys.of(actor_id)
        found = await self._write(keys.tag, "mva_delete", delete_args(keys))
        if not int(found):
            raise ActorNotFound(f"no actor {actor_id!r} in Redis at {self.url}")

    # ---- repair: pause, resume, retry, cancel, snapshot ----

    def _not_found(self, actor_id: str) -> ActorNotFound:
        return ActorNotFound(f"no actor {actor_id!r} in Redis at {self.url}")

    async def _hint(self, actor_id: str) -> None:
        """Wake the workers waiting for actors with no owner (they also find it by scanning)."""
        redis = self.redis
        await self.link.guarded(lambda: redis.xadd(HINT_FREE, {"a": actor_id}, maxlen=64, approximate=True))

    def _gone(self, actor_id: str) -> Described:
        raise self._not_found(actor_id)

    async def _current(self, actor_id: str) -> tuple[ActorRecord | None, bytes]:
        """The actor's committed state: (record, its snapshot), or (None, the spawned snapshot)."""
        keys = ActorKeys.of(actor_id)
        link = self.link

        def reads(pipe: Any) -> None:
            pipe.hget(keys.state, "f")
            pipe.get(keys.record)

        fresh, saved = await link.guarded(lambda: link.pipeline_once(reads))
        if saved is None:
            raise self._not_found(actor_id)
        if fresh:
            return None, bytes(saved)
        record = ActorRecord.decode(stored_record(bytes(saved)))
        return record, record.snapshot
