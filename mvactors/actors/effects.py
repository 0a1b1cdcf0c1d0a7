"""``HostCalls``: the one road every host call of every actor takes.

Synchronous host functions run inside the turn, through :meth:`HostCalls.call`
(only when a subclass overrides it: the default costs nothing).  Asynchronous
ones, sleeps included, leave the turn as :class:`AsyncCall` values and are
started through :meth:`HostCalls.start` once the turn has committed (a
rolled-back turn leaves nothing running); their outcome comes back to the
actor as a completion message (:meth:`Actor.deliver`).  Subclass to intercept:
a cluster worker's journal overrides :meth:`run` to return a recorded result.

All a HostCalls asks of the runtime goes through ``actor.services``
(:class:`~mvactors.actors.services.RuntimeServices`): ``arm_timer``,
``start_host_task`` and ``clock``; a subclass that overrides :meth:`start` uses the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..imports import CURRENT_CALL, AsyncCall
from ..vm import is_async_import, run_async_import
from .gas import HostCallRecord
from .mailbox import plain

if TYPE_CHECKING:
    from .actor import Actor


class HostCalls:
    """Runs the host calls of a Runtime's actors (pass a subclass as ``Runtime(host_calls=...)``)."""

    def call(self, actor: Actor, import_id: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """A synchronous host call, made during ``actor``'s turn: returns what the guest gets.

        Default: ``fn(*args)``.  Overriding it wraps each actor's synchronous
        imports in one more Python call.
        """
        return fn(*args)

    def start(self, actor: Actor, call: AsyncCall) -> None:
        """Begin ``call`` after the turn that made it committed; its outcome goes to ``actor.deliver``.

        Default: a sleep arms the runtime's timer at ``call.due``; anything else
        runs :meth:`run` as a task of the actor's runtime.
        """
        services = actor.services
        if call.due is not None:
            services.arm_timer(actor, call.token, call.due)
        else:
            services.start_host_task(self.run, actor, call)

    async def run(self, actor: Actor, call: AsyncCall) -> tuple[bool, Any]:
        """Run ``call`` to its outcome: ``(True, value)``, or ``(False, rejection value)``.

        The override point for journals and fakes; :func:`mvactors.current_call`
        returns ``call`` while ``call.fn`` runs.
        """
        if call.due is not None:  # a sleep started through run() by an overriding start()
            await actor.services.clock.sleep_until(call.due)
            return True, None
        reset = CURRENT_CALL.set(call)
        try:
            return await run_async_import(call.fn, list(call.args))
        finally:
            CURRENT_CALL.reset(reset)

    def bind(self, actor: Actor, imports: Mapping[int, Callable[..., Any]],
             record: list[HostCallRecord] | None) -> Mapping[int, Callable[..., Any]]:
        """The import map ``actor``'s VM calls: ``imports`` itself when nothing needs to see the calls.

        With ``record`` (a metered actor), each synchronous call is appended to
        it first: a rolled-back turn reports the calls it made.
        """
        intercept = type(self).call is not HostCalls.call
        if record is None and not intercept:
            return imports  # shared by every actor with this map: a fleet holds one dict, not one each
        wrapped: dict[int, Callable[..., Any]] = {}
        for import_id, fn in imports.items():
            wrapped[import_id] = fn if is_async_import(fn) else self._sync(actor, import_id, fn, record, intercept)
        return wrapped

    def _sync(self, actor: Actor, import_id: int, fn: Callable[..., Any], record: list[HostCallRecord] | None,
              intercept: bool) -> Callable[..., Any]:
        call = self.call

        def host_call(*args: Any) -> Any:
            if record is not None:
                record.append(HostCallRecord(import_id, tuple(plain(a) for a in args)))
            return call(actor, import_id, fn, args) if intercept else fn(*args)

        return host_call


__all__ = ["AsyncCall", "HostCalls"]
