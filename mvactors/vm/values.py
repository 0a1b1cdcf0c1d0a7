"""Guest values in Python: the ``null`` sentinel and live proxies of guest objects.

Values cross the boundary by copy going in (plain data only) and by reference
coming out (objects, arrays, functions, classes and Uint8Arrays become proxies
holding a handle on the guest object).  A proxy is a handle slot of one VM's
:class:`GuestHeap`, which does all the work.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import MicroviumError

if TYPE_CHECKING:
    from .machine import VM

MAX_SAFE_INT = 2**53
"""Integers beyond ±2**53 have no exact JavaScript number."""


class _Null:
    """JavaScript ``null`` (JavaScript ``undefined`` is Python ``None``)."""

    _instance: _Null | None = None

    def __new__(cls) -> _Null:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "mvactors.null"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "null"


null = _Null()
NullType = _Null
"""The type of :data:`null` (for annotations and type checks)."""


class GuestHeap(Protocol):
    """What proxies need of their VM: guest values held in numbered handle slots.

    A slot keeps its value alive (and up to date when the GC moves it) until
    :meth:`release`.
    """

    @property
    def vm(self) -> VM:
        """The VM whose heap this is."""
        ...

    def release(self, slot: int) -> None:
        """Let the value in ``slot`` go (no-op once the VM is closed)."""
        ...

    def call(self, slot: int, args: tuple[Any, ...], this: GuestRef | None) -> Any:
        """Call the guest function in ``slot`` (``this`` for a method)."""
        ...

    def get_property(self, slot: int, key: str | int, bind: bool) -> Any:
        """Property ``key`` of the object in ``slot``; ``bind`` makes a function read from it a method."""
        ...

    def set_property(self, slot: int, key: str | int, value: Any) -> None: ...

    def keys(self, slot: int) -> list[str]:
        """The object's own enumerable keys, in guest order."""
        ...

    def read_bytes(self, slot: int) -> bytes:
        """A copy of the Uint8Array in ``slot``."""
        ...

    def write_bytes(self, slot: int, data: bytes, offset: int) -> None: ...

    def same_value(self, a: int, b: int) -> bool:
        """Whether slots ``a`` and ``b`` hold the same guest value (``===``)."""
        ...

    def to_python(self, slot: int) -> Any:
        """A deep copy of the value in ``slot`` as plain Python data (functions stay proxies)."""
        ...

    def describe(self, slot: int) -> str:
        """A short text for ``repr``."""
        ...

    def await_promise(self, promise: GuestPromise) -> Awaitable[Any]:
        """The settled value of a guest promise (a rejection raises GuestError)."""
        ...

    def promise_state(self, slot: int) -> str:
        """``"pending"``, ``"fulfilled"`` or ``"rejected"``."""
        ...


class GuestRef:
    """Base of all proxies: a handle on one guest value of one VM."""

    __slots__ = ("__weakref__", "_heap", "_slot")

    def __init__(self, heap: GuestHeap, slot: int) -> None:
        self._heap = heap
        self._slot = slot

    def __del__(self) -> None:
        heap = self._heap
        if heap is not None:
            heap.release(self._slot)

    @property
    def vm(self) -> VM:
        """The VM this value lives in."""
        return self._heap.vm

    def to_python(self) -> Any:
        """A deep copy of the guest value as plain Python data."""
        return self._heap.to_python(self._slot)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GuestRef):
            return other._heap is self._heap and self._heap.same_value(self._slot, other._slot)
        return NotImplemented

    def __hash__(self) -> int:
        return id(self._heap)

    def __repr__(self) -> str:
        try:
            return f"<{type(self).__name__} {self._heap.describe(self._slot)}>"
        except Exception:  # closed VM
            return f"<{type(self).__name__} (VM closed)>"


class GuestObject(GuestRef):
    """A live guest object: attribute/item access, ``keys()``, iteration over keys, ``len``."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._heap.get_property(self._slot, name, bind=True)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in GuestRef.__slots__:
            object.__setattr__(self, name, value)
        else:
            self._heap.set_property(self._slot, name, value)

    def __getitem__(self, key: str | int) -> Any:
        return self._heap.get_property(self._slot, key, bind=True)

    def __setitem__(self, key: str | int, value: Any) -> None:
        self._heap.set_property(self._slot, key, value)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def keys(self) -> list[str]:
        """The object's own enumerable keys, in guest order (``Reflect.ownKeys``)."""
        return self._heap.keys(self._slot)

    def items(self) -> list[tuple[str, Any]]:
        return [(k, self[k]) for k in self.keys()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __dir__(self) -> list[str]:
        return self.keys()


def _in_range(index: int, length: int, what: str) -> int:
    """``index`` into a sequence of ``length`` items as Python reads it (negative from the end)."""
    at = index + length if index < 0 else index
    if not 0 <= at < length:
        raise IndexError(f"{what} index {index} out of range (length {length})")
    return at


class GuestArray(GuestRef):
    """A live guest array: indexing (negative too), assignment, ``len``, iteration, ``append``."""

    __slots__ = ()

    def __len__(self) -> int:
        n = self._heap.get_property(self._slot, "length", bind=False)
        if type(n) is not int or n < 0:
            raise MicroviumError(f"a guest array reports the length {n!r}: the snapshot is corrupt",
                                 "MVM_E_INVALID_BYTECODE")
        return n

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not isinstance(index, int):
            raise TypeError(f"guest array indices must be integers, not {type(index).__name__}")
        return self._heap.get_property(self._slot, _in_range(index, len(self), "guest array"), bind=False)

    def __setitem__(self, index: int, value: Any) -> None:
        if not isinstance(index, int):
            raise TypeError(f"guest array indices must be integers, not {type(index).__name__}")
        n = len(self)
        if index < 0:
            index += n
        if index < 0:
            raise IndexError(f"guest array index {index - n} out of range (length {n})")
        self._heap.set_property(self._slot, index, value)

    def append(self, value: Any) -> None:
        self._heap.set_property(self._slot, len(self), value)

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self._heap.get_property(self._slot, i, bind=False)

    def keys(self) -> list[int]:
        return list(range(len(self)))


class GuestFunction(GuestRef):
    """A guest function or closure; calling it runs the guest.

    When it was read from an object it is bound: calling passes that object as
    ``this``.  A guest ``async`` function returns an awaitable (GuestPromise).
    """

    __slots__ = ("_this",)

    def __init__(self, heap: GuestHeap, slot: int, this: GuestRef | None = None) -> None:
        super().__init__(heap, slot)
        self._this = this

    def __call__(self, *args: Any) -> Any:
        return self._heap.call(self._slot, args, self._this)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._heap.get_property(self._slot, name, bind=True)


class GuestMethod(GuestFunction):
    """A guest function read from an object: calling it passes that object as ``this``."""

    __slots__ = ()


class GuestClass(GuestFunction):
    """A guest class: calling it constructs an instance (``new``); static members as attributes."""

    __slots__ = ()


class GuestBytes(GuestRef):
    """A live guest Uint8Array."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._heap.read_bytes(self._slot))

    def slice(self, start: int = 0, end: int | None = None) -> bytes:
        """A copy of bytes ``[start, end)`` (Python slice rules)."""
        return self._heap.read_bytes(self._slot)[start:end]

    def set(self, data: bytes | bytearray | memoryview, offset: int = 0) -> None:
        """Write ``data`` into the array at ``offset`` (must fit)."""
        self._heap.write_bytes(self._slot, bytes(data), offset)

    def __bytes__(self) -> bytes:
        return self._heap.read_bytes(self._slot)

    def __getitem__(self, index: int) -> int:
        return self._heap.read_bytes(self._slot)[index]

    def __setitem__(self, index: int, value: int) -> None:
        self._heap.write_bytes(self._slot, bytes([value]), _in_range(index, len(self), "Uint8Array"))


def slot_of(ref: GuestRef) -> int:
    """The handle slot ``ref`` holds in its heap."""
    return ref._slot


def slot_in(ref: GuestRef, heap: GuestHeap) -> int:
    """The handle slot ``ref`` holds if it lives in ``heap``, else -1 (one call where a VM takes a proxy in)."""
    return ref._slot if ref._heap is heap else -1


def observe(promise: GuestPromise) -> None:
    """Mark ``promise`` as watched by someone: dropping it unawaited does not warn."""
    promise._observed = True


class GuestPromise(GuestRef):
    """A guest promise; ``await`` it for the settled value (rejection raises GuestError).

    Like a coroutine, a promise that is dropped without being awaited (or its ``state``
    read) warns with ``RuntimeWarning``: its outcome, an error included, would go unseen.
    """

    __slots__ = ("_observed",)

    def __init__(self, heap: GuestHeap, slot: int) -> None:
        super().__init__(heap, slot)
        self._observed = False

    def __del__(self) -> None:
        if not self._observed:
            warnings.warn(f"{self!r} was never awaited", RuntimeWarning, stacklevel=2)
        super().__del__()

    def __await__(self) -> Any:
        self._observed = True
        # Pass the proxy itself: it keeps the handle (and so the promise) alive while awaited.
        return self._heap.await_promise(self).__await__()

    @property
    def state(self) -> str:
        """``"pending"``, ``"fulfilled"`` or ``"rejected"``."""
        self._observed = True
        return self._heap.promise_state(self._slot)


__all__ = [
    "GuestArray",
    "GuestBytes",
    "GuestClass",
    "GuestFunction",
    "GuestHeap",
    "GuestMethod",
    "GuestObject",
    "GuestPromise",
    "GuestRef",
    "NullType",
    "null",
    "observe",
    "slot_in",
    "slot_of",
]
