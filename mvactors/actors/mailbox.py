"""What travels through an actor's mailbox: messages, the replies callers wait on, and the checks at the door."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import anyio

from ..vm import GuestFunction, GuestRef, check_args


class Reply:
    """Where a caller waits for the outcome of its message (``await reply.wait()``; ``reply.done``)."""

    __slots__ = ("_error", "_event", "_outcome", "done")

    def __init__(self) -> None:
        self._event: anyio.Event | None = None
        self._outcome: Any = None
        self._error: BaseException | None = None
        self.done = False

    def resolve(self, value: Any) -> None:
        if not self.done:
            self.done = True
            self._outcome = value
            if self._event is not None:
                self._event.set()

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            self._error = error
            if self._event is not None:
                self._event.set()

    @property
    def error(self) -> BaseException | None:
        """What the turn raised, once done (None while it runs, or when it succeeded)."""
        return self._error

    async def wait(self) -> Any:
        """The turn's result (a plain Python copy), once it ran; raises the turn's error."""
        if not self.done:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
        return self.result()

    def result(self) -> Any:
        """The outcome of a done reply (raises the turn's error)."""
        if self._error is not None:
            raise self._error
        return self._outcome


@dataclass(eq=False, slots=True)  # mailbox operations compare by identity, never by arguments
class Message:
    """A mailbox entry: a call of ``export_id`` or the completion of async host call ``token``."""

    export_id: int = -1
    args: tuple[Any, ...] = ()
    reply: Reply | None = None
    token: int = 0
    ok: bool = True
    value: Any = None

    @property
    def is_completion(self) -> bool:
        return self.token != 0

    def describe(self) -> str:
        if self.is_completion:
            return f"completion of async host call {self.token}"
        return f"call of export {self.export_id}"


class _NoMail(deque):  # type: ignore[type-arg]
    """The empty mailbox of a hibernated actor, shared: adding to it is a bug (use Cell.mail())."""

    def append(self, item: Any) -> None:
        raise AssertionError("a hibernated actor's shared empty mailbox was written to")

    appendleft = extend = extendleft = insert = append  # type: ignore[assignment]


NO_MAIL: deque[Any] = _NoMail()


def plain(value: Any) -> Any:
    """A Python copy of a guest value that outlives the VM (functions stay proxies)."""
    if isinstance(value, GuestRef) and not isinstance(value, GuestFunction):
        return value.to_python()
    return value


def check_message(export_id: Any, args: tuple[Any, ...]) -> None:
    """Reject, when a message is sent, what no turn could run (the turn would fail later, silently for send)."""
    if not isinstance(export_id, int) or isinstance(export_id, bool):
        raise TypeError(f"export IDs are ints, not {type(export_id).__name__}")
    check_args(args)
