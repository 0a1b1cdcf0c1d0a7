# The C extension's interface (mvactors/vm/_fastcall.c); it is optional, see _calls.py.
from typing import Any

class FastCall:
    def __init__(self, *, fallback: Any, raise_trapped: Any, entry: Any, call_address: int, ctx: int, raw: int,
                 trap: int, arg0: int, stride: int, max_args: int, guard: int, argc_shift: int, trapped_below: int,
                 small_min: int, small_max: int, tag: int, sign: int, bias: int, undefined: int, true_value: int,
                 false_value: int) -> None: ...
    def __call__(self, *args: Any) -> Any: ...
    def __get__(self, obj: Any, owner: Any = None) -> Any: ...
