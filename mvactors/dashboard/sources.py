"""Where the dashboard's numbers come from: a small protocol, over an in-process Runtime or over Redis.

The pages only ever call :class:`DataSource`; they never reach into a Runtime or a client.
Both sources answer with plain dicts (the operations API's describe-dicts, plus ``"id"``) so a
template renders either the same way, and each says which filters and actions it offers, so a
page shows only what works.
"""

from __future__ import annotations

import inspect
import math
import os
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..actors import Actor, Runtime
    from ..cluster.client import Client

#: The states the pages group actors by (the operations API's ``describe()["state"]``).
STATES = ("idle", "running", "paused", "failed")

#: What the actor page's buttons do; a source offers the subset it can do.
ACTIONS = ("pause", "resume", "retry", "cancel", "fork", "reset", "delete")

#: The filters of the actors table; a source offers the subset it can apply.
FILTERS = ("state", "imports", "owner", "code")


class Unavailable(Exception):
    """The source cannot answer this (a client without the method, or a Runtime that has no such thing)."""


@dataclass
class ActorPage:
    """One page of the actors table: its rows, and the cursor of the next page (None: the last)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None = None
    #: The search stopped at its time budget: more actors may match than the rows show.
    partial: bool = False


@dataclass
class Overview:
    """The overview page's figures; a value of None is one the source cannot give."""

    counts: dict[str, int | None]
    turns: int | None  # total turns so far, sampled by the page into a turns/s chart
    failures: list[dict[str, Any]] | None = None  # describe-dicts of failed actors (None: cannot tell)
    notes: list[str] = field(default_factory=list)  # what is not available, and why
    #: States counted exactly, whatever their number (the others were counted up to COUNT_CAP).
    exact: frozenset[str] = frozenset()
    #: States whose count is an estimate (the page marks them "≈"), and how the counts were had.
    approximate: frozenset[str] = frozenset()
    remarks: list[str] = field(default_factory=list)
    #: How the failures were chosen, when they are not simply the latest (shown under them).
    failures_note: str | None = None


class DataSource(Protocol):
    """What the dashboard reads and does.  Implementations: :class:`RuntimeSource`, :class:`RedisSource`."""

    #: A short description for the page header ("in-process Runtime", "Redis at host:port/db").
    label: str

    @property
    def filters(self) -> frozenset[str]:
        """The subset of :data:`FILTERS` that :meth:`actors` applies."""
        ...

    def actions(self) -> frozenset[str]:
        """The subset of :data:`ACTIONS` this source can do (the pages show buttons for these only)."""
        ...

    async def overview(self) -> Overview:
        """Actors by state, total turns, the latest failures."""
        ...

    async def actors(self, filters: Mapping[str, str], cursor: str | None, limit: int) -> ActorPage:
        """Up to ``limit`` actors matching ``filters`` (keys from :attr:`filters`), from ``cursor`` on."""
        ...

    async def actor(self, actor_id: str) -> dict[str, Any] | None:
        """The actor's describe-dict plus ``"id"`` (and ``"pending_calls"`` where known), or None if unknown."""
        ...

    async def history(self, actor_id: str, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` kept turns, oldest first; raises :class:`Unavailable` when none can be read."""
        ...

    async def workers(self) -> list[dict[str, Any]]:
        """Live workers: ``id``, ``host``, ``pid``, ``actors``, ``turns``, ``started``, ``seen`` (unix s)."""
        ...

    async def act(self, actor_id: str, action: str, params: Mapping[str, str]) -> str:
        """Do ``action`` to the actor; returns what happened, in a sentence.  ValueError: refused, saying why."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


# ---- in process ----


def _error_text(exc: BaseException | None) -> str | None:
    return None if exc is None else f"{type(exc).__name__}: {exc}"


def _plain(value: Any) -> Any:
    """A value the templates can print: guest values as their Python copies, the rest as they are."""
    if hasattr(value, "to_python"):
        value = value.to_python()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 1) if math.isfinite(value) else None
    return value


class RuntimeSource:
    """The actors of an in-process :class:`~mvactors.Runtime`.

    Serve the app in the runtime's own event loop (``mvactors.dashboard.serve``): every read here
    runs between the runtime's turns, so it sees an actor between turns, never halfway through one.
    """

    filters = frozenset({"state"})

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.label = "in-process Runtime"
        self._started = time.time()

    def actions(self) -> frozenset[str]:
        # Only what the Runtime's public API does today; pause/cancel appear once Actor offers them.
        from ..actors import Actor

        offered = {"resume"}
        # Actor.pause is the PauseEvent property today; a method of that name would pause.
        if callable(getattr(Actor, "pause", None)):
            offered.add("pause")
        if callable(getattr(Actor, "cancel_paused", None)):
            offered.add("cancel")
        return frozenset(offered)

    @staticmethod
    def state_of(actor: Actor) -> str:
        """The operations API's state for an in-process state: a hibernated actor is idle."""
        state = actor.state
        return "idle" if state in ("hibernated", "evicted") else str(state)

    def describe(self, actor: Actor) -> dict[str, Any]:
        """What the Runtime's public API says of one actor, in describe-dict shape."""
        pause = actor.pause
        metrics = actor.metrics.snapshot()
        gas = actor.gas
        return {
            "id": actor.id,
            "state": self.state_of(actor),
            "runtime_state": actor.state,
            "turns": metrics["turns"],
            "mailbox": actor.mailbox_depth,
            "paused": None if pause is None else {"reason": pause.reason, "detail": pause.message,
                                                  "gas_budget": pause.gas_budget},
            "failed": _error_text(actor.failure),
            "last_failure": _error_text(actor.last_failure),
            "gas": None if not gas.active else {"per_turn": gas.per_turn, "quota": gas.quota,
                                                "refill_per_second": gas.refill_per_second},
            "quota_left": actor.quota_left,
            **{k: _plain(v) for k, v in metrics.items() if k not in ("turns", "mailbox_depth")},
        }

    async def overview(self) -> Overview:
        counts: dict[str, int | None] = dict.fromkeys(STATES, 0)
        failures: list[dict[str, Any]] = []
        for actor in self.runtime.actors:
            state = self.state_of(actor)
            counts[state] = (counts.get(state) or 0) + 1
            if (actor.failure is not None or actor.last_failure is not None) and len(failures) < 10:
                failures.append(self.describe(actor))
        return Overview(counts=counts, turns=int(self.runtime.stats()["turns"]), failures=failures,
                        exact=frozenset(STATES))

    async def actors(self, filters: Mapping[str, str], cursor: str | None, limit: int) -> ActorPage:
        state = filters.get("state")
        # Sorted by ID, so a cursor (the last ID shown) stays valid while actors come and go.
        found = sorted((a for a in self.runtime.actors if not state or self.state_of(a) == state), key=lambda a: a.id)
        if cursor:
            found = [a for a in found if a.id > cursor]
        page = found[:limit]
        more = len(found) > limit
        return ActorPage([self.describe(a) for a in page], page[-1].id if more and page else None)

    async def actor(self, actor_id: str) -> dict[str, Any] | None:
        if actor_id not in self.runtime:
            return None
        actor = self.runtime.get(actor_id)
        info = self.describe(actor)
        if actor.state not in ("failed", "evicted", "running"):
            # The record lists what the actor awaits; collect=False leaves its heap as it is.
            record = actor.record(collect=False)
            info["pending_calls"] = [{"import": p.import_id, "args": _plain(p.args), "due": p.due}
                                     for p in record.pending]
        return info

    async def history(self, actor_id: str, limit: int) -> list[dict[str, Any]]:
        raise Unavailable("the in-process Runtime keeps no turn history")

    async def workers(self) -> list[dict[str, Any]]:
        # The process itself is the one "worker" of an in-process Runtime.
        return [{"id": "this process", "host": socket.gethostname(), "pid": os.getpid(),
                 "actors": len(self.runtime), "turns": int(self.runtime.stats()["turns"]),
                 "started": self._started, "seen": time.time()}]

    async def act(self, actor_id: str, action: str, params: Mapping[str, str]) -> str:
        if actor_id not in self.runtime:
            raise ValueError(f"no actor {actor_id!r} in this runtime")
        actor = self.runtime.get(actor_id)
        if action not in self.actions():
            raise ValueError(f"the in-process Runtime cannot {action} an actor")
        if action == "resume":
            if actor.pause is None:
                raise ValueError(f"actor {actor_id} is not paused (it is {self.state_of(actor)})")
            await actor.resume(_optional_int(params, "extra_gas"))
            return f"resumed {actor_id}: its paused turn runs again"
        if action == "pause":
            await getattr(actor, "pause")()  # noqa: B009  (an Actor.pause that is not there yet)
            return f"paused {actor_id}"
        await getattr(actor, "cancel_paused")()  # noqa: B009
        return f"dropped the paused message of {actor_id}"

    async def aclose(self) -> None:
        return None


# ---- Redis ----


def _optional_int(params: Mapping[str, str], name: str) -> int | None:
    text = (params.get(name) or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {text!r}") from None


def _required_int(params: Mapping[str, str], name: str) -> int:
    value = _optional_int(params, name)
    if value is None:
        raise ValueError(f"{name} is required")
    return value


def display_url(url: str) -> str:
    """``url`` without a password, for the page header."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    _, at, host = rest.rpartition("@")
    return f"{scheme}://{host}" if at else url


#: How many failed or paused actors the overview counts before it shows "N+".
COUNT_CAP = 1000
#: Seconds one actors-table request may walk the inventory before it shows what it found.
SEARCH_BUDGET_S = 1.0


class RedisSource:
    """The actors in Redis, through :class:`mvactors.cluster.Client` and its operations methods.

    Every method of the operations API (``actors``, ``workers``, ``history``, ``pause`` ...) is
    looked up when used: a client without one makes that part of a page say "not available"
    instead of failing the page.
    """

    def __init__(self, url: str, client: Client | None = None) -> None:
        self.url = url
        self.label = f"Redis at {display_url(url)}"
        self._client = client
        self._own = client is None
        self._lock: Any = None

    @property
    def filters(self) -> frozenset[str]:
        if not self.has("actors"):
            return frozenset()
        return frozenset(FILTERS)

    def has(self, method: str) -> bool:
        """Whether the client offers this operations method (a client before issue 16 has few)."""
        from ..cluster.client import Client

        return callable(getattr(self._client if self._client is not None else Client, method, None))

    def actions(self) -> frozenset[str]:
        return frozenset(a for a in ACTIONS if self.has(a))

    async def client(self) -> Client:
        """The connected client, connected on first use (in whatever event loop serves the app)."""
        if self._client is not None:
            return self._client
        import anyio

        from ..cluster.client import Client

        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._client is None:
                client = Client(self.url)
                await client.__aenter__()
                self._client = client
        return self._client

    async def _iterate(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        if not self.has("actors"):
            raise Unavailable("listing actors needs client.actors() (the operations API)")
        client = await self.client()
        stream: AsyncIterator[dict[str, Any]] = getattr(client, "actors")(**filters)  # noqa: B009
        try:
            async for info in stream:
                yield info
        finally:
            # Stop the server-side cursor as soon as the page has its rows.
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()

    async def _take(self, limit: int, budget: float | None = None, **filters: Any) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` rows; and whether the walk stopped at ``budget`` seconds before finding them all."""
        import anyio

        rows: list[dict[str, Any]] = []
        if limit <= 0:
            return rows, False
        if self.has("actors"):
            await self.client()  # connected outside the budget: a cut connect would leak its pool
        # A scope, not a check per row: a filter nothing matches yields no row to check at.
        if self._accepts("actors", "limit"):
            # Sized reads: the first page of 100,000 describes ~limit actors, not the 8,192 of a
            # plain stream's first round (that took the 100k first page to ~300 ms under load).
            filters["limit"] = limit
        with anyio.move_on_after(math.inf if budget is None else budget) as scope:
            async for info in self._iterate(**filters):
                rows.append(info)
                if len(rows) >= limit:
                    break
        return rows, scope.cancelled_caught

    async def overview(self) -> Overview:
        notes: list[str] = []
        remarks: list[str] = []
        counts: dict[str, int | None] = dict.fromkeys(STATES)
        exact: frozenset[str] = frozenset()
        approximate: frozenset[str] = frozenset()
        failures: list[dict[str, Any]] | None = None
        turns: int | None = None
        workers: list[dict[str, Any]] | None = None
        if self.has("workers"):  # (without it, the page says so where it lists workers)
            workers = await self.workers()
            turns = sum(int(w.get("turns") or 0) for w in workers)
        if self.has("counts"):
            # Exact totals from the indexes' sizes: 128 reads in one pipeline at any number of actors.
            known: dict[str, int] = await getattr(await self.client(), "counts")()  # noqa: B009
            counts["failed"], counts["paused"] = known["failed"], known["paused"]
            exact = frozenset({"failed", "paused"})
            rest = max(0, known["total"] - known["failed"] - known["paused"])
            if workers is not None:
                # No index says who holds an actor (only its lease key does), so running is what the
                # live workers held at their last heartbeat (every quarter lease), and idle the rest.
                running = min(rest, sum(int(w.get("actors") or 0) for w in workers))
                counts["running"], counts["idle"] = running, rest - running
                approximate = frozenset({"idle", "running"})
                remarks.append(f"{known['total']} actors; idle + running: {rest} exactly. Running is what live "
                               "workers held at their last heartbeat and idle the rest (≈): Redis indexes failed "
                               "and paused actors, not which worker holds one")
            else:
                remarks.append(f"{known['total']} actors; idle + running: {rest} (Redis indexes failed and paused "
                               "actors, not which worker holds one)")
        elif self.has("actors"):
            # A client without counts(): failed and paused are read from their indexes (small);
            # idle and running would take a walk over every actor, so the overview leaves them out.
            for state in ("failed", "paused"):
                found, _ = await self._take(COUNT_CAP + 1, state=state)
                counts[state] = len(found)  # COUNT_CAP + 1 reads "1000+" on the page
            notes.append("idle and running counts: they would take a walk over every actor in Redis")
        else:
            notes.append("actors by state and the latest failures need client.actors() (the operations API)")
        failures_note = None
        if self.has("actors"):
            failures, _ = await self._take(10, state="failed")  # the failed index, 10 rows
            if counts["failed"] is None or counts["failed"] > len(failures):
                # The failed index keeps no time (score 0), so "latest" cannot be read from it.
                failures_note = ("the first 10 failed actors by ID: Redis keeps no time of failure, so which "
                                 "failed last is not known; the actors table filtered by state=failed lists them all")
        return Overview(counts=counts, turns=turns, failures=failures, notes=notes, exact=exact,
                        approximate=approximate, remarks=remarks, failures_note=failures_note)

    async def actors(self, filters: Mapping[str, str], cursor: str | None, limit: int) -> ActorPage:
        chosen: dict[str, Any] = {k: v for k, v in filters.items() if k in FILTERS and v}
        # A client whose actors() resumes after an ID gets the last ID shown as the cursor; with
        # the contract's plain stream, the cursor is how many rows to skip (cheap for the first pages).
        by_id = self._accepts("actors", "after")
        skip = 0
        if cursor and by_id:
            chosen["after"] = cursor
        elif cursor:
            skip = int(cursor) if cursor.isdigit() else 0
        # Filters other than failed/paused walk the whole inventory (20,000+ actors/s): a page
        # of a rare owner or import table among many stops at its budget and says so.
        found, partial = await self._take(skip + limit + 1, SEARCH_BUDGET_S, **chosen)
        rows = found[skip:]
        if partial:
            return ActorPage(rows[:limit], partial=True)
        if len(rows) <= limit:
            return ActorPage(rows)
        rows = rows[:limit]
        return ActorPage(rows, str(rows[-1]["id"]) if by_id else str(skip + limit))

    def _accepts(self, method: str, parameter: str) -> bool:
        from ..cluster.client import Client

        fn = getattr(Client, method, None)
        if fn is None:
            return False
        try:
            return parameter in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return False

    async def actor(self, actor_id: str) -> dict[str, Any] | None:
        from ..cluster.errors import ActorNotFound

        client = await self.client()
        try:
            info = await client.describe(actor_id)
        except ActorNotFound:
            return None
        return {"id": actor_id, **info}

    async def history(self, actor_id: str, limit: int) -> list[dict[str, Any]]:
        if not self.has("history"):
            raise Unavailable("the history timeline needs client.history() (the operations API)")
        client = await self.client()
        turns: list[dict[str, Any]] = []
        async for turn in getattr(client, "history")(actor_id):  # noqa: B009
            turns.append(turn)
        return turns[-limit:]

    async def workers(self) -> list[dict[str, Any]]:
        if not self.has("workers"):
            raise Unavailable("workers and turns/s need client.workers() (the operations API)")
        client = await self.client()
        workers: list[dict[str, Any]] = await getattr(client, "workers")()  # noqa: B009
        return workers

    async def act(self, actor_id: str, action: str, params: Mapping[str, str]) -> str:
        from ..cluster.errors import ActorNotFound

        if action not in self.actions():
            raise ValueError(f"this client cannot {action} actors (it needs the operations API)")
        client = await self.client()
        method = getattr(client, action)
        try:
            if action == "cancel":
                message_id = (params.get("message_id") or "").strip()
                if not message_id:
                    raise ValueError("cancel needs the message ID")
                dropped = await method(actor_id, message_id)
                return (f"message {message_id} was dropped before it ran" if dropped
                        else f"message {message_id} had already been applied; nothing was dropped")
            if action == "fork":
                new_id = await method(actor_id, turn=_required_int(params, "turn"))
                return f"forked {actor_id} at turn {params['turn']} as {new_id}"
            if action == "reset":
                reapply = params.get("reapply") in ("on", "true", "1")
                await method(actor_id, turn=_required_int(params, "turn"), reapply=reapply)
                return (f"reset {actor_id} to turn {params['turn']}; later messages "
                        + ("queued again in order" if reapply else "dropped"))
            if action == "pause" and self._accepts("pause", "detail"):
                # Says where the pause came from, for whoever finds the actor paused later.
                await method(actor_id, detail="paused from the dashboard")
                return f"paused {actor_id}"
            if action == "resume":
                await method(actor_id, extra_gas=_optional_int(params, "extra_gas"))
                return f"resumed {actor_id}"
            await method(actor_id)
        except ActorNotFound as exc:
            # The client names its URL; the page shows it without a password.
            raise ValueError(str(exc).replace(self.url, display_url(self.url))) from None
        past = {"pause": "paused", "retry": "retried", "delete": "deleted"}[action]
        return f"{past} {actor_id}"

    async def aclose(self) -> None:
        if self._client is not None and self._own:
            await self._client.aclose()
            self._client = None


__all__ = ["ACTIONS", "COUNT_CAP", "FILTERS", "SEARCH_BUDGET_S", "STATES", "ActorPage", "DataSource", "Overview",
           "RedisSource", "RuntimeSource", "Unavailable", "display_url"]
