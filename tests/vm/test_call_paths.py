"""The two paths of the trivial guest call: the C extension and the pure-Python code it falls back to.

``mvactors.vm._fastcall`` makes GuestFunction.__call__ in C for int14, None and
bool arguments and int14 results; everything else goes to the Python closure in
_calls.py.  Both must give the same values and raise the same exceptions with
the same messages.  The Python path stays reachable in-process as the class's
``_py_call``; ``MVACTORS_PURE=1`` (CI runs the VM suites again with it) makes
it the only one.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import mvactors
from mvactors.vm import _calls

GUEST = """
const host = vmImport(1);
vmExport(1, (x) => x);
vmExport(2, (x) => x + 1);
vmExport(3, (a, b, c) => [a, b, c].length === 3 ? a : b);
vmExport(4, (x) => { throw x; });
vmExport(5, (n) => { let i = 0; while (i < n) { i++; } return i; });
vmExport(6, () => { while (true) {} });
vmExport(7, (x) => host(x) + 1);
vmExport(8, () => undefined);
vmExport(9, (a, b) => a === b);
"""

INT14_EDGES = [-0x2001, -0x2000, -0x1FFF, -1, 0, 1, 0x1FFE, 0x1FFF, 0x2000, 2**31, -(2**31), 2**53 - 1, -(2**53) + 1]
VALUES: list[Any] = [
    *INT14_EDGES,
    0.5, -0.0, 0.0, math.nan, math.inf, -math.inf, 1e300, 1.0,
    True, False, None, mvactors.null,
    "", "a", "héllo", "日本語", "emoji 🎉",
]


def outcome(call: Callable[[], Any]) -> tuple[str, str]:
    """What a call gave, comparable across paths: (repr of the value) or (exception type, message)."""
    try:
        value = call()
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return "value", repr(value) if not isinstance(value, mvactors.GuestRef) else type(value).__name__


@pytest.fixture
def guest(compile_js: Callable[[str], bytes]) -> bytes:
    return compile_js(GUEST)


def both(fn: Any, *args: Any) -> tuple[tuple[str, str], tuple[str, str]]:
    """The outcome of ``fn(*args)`` by the active path and by the pure-Python path."""
    return outcome(lambda: fn(*args)), outcome(lambda: type(fn)._py_call(fn, *args))


def test_the_active_path_is_reported() -> None:
    expected = "python" if os.environ.get("MVACTORS_PURE", "") not in ("", "0") else "c"
    assert expected == _calls.CALL_PATH, _calls.CALL_PATH_REASON


def test_pure_forces_the_python_path() -> None:
    script = "from mvactors.vm import _calls; print(_calls.CALL_PATH, '|', _calls.CALL_PATH_REASON)"
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "MVACTORS_PURE": "1"},
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("python | MVACTORS_PURE"), out


def test_a_missing_extension_falls_back_to_python() -> None:
    # What a user without a C compiler at install time gets: the import fails, calls still work.
    script = ("import sys; sys.modules['mvactors.vm._fastcall'] = None\n"
              "import mvactors; from mvactors.vm import _calls; from tests.conftest import compile_source\n"
              "vm = mvactors.VM.restore(compile_source('const h = vmImport(1); vmExport(1, (x) => h(x) + 1);'),"
              " {1: lambda x: x * 2})\n"
              "print(_calls.CALL_PATH, vm.exports[1](20), '|', _calls.CALL_PATH_REASON)")
    env = {k: v for k, v in os.environ.items() if k != "MVACTORS_PURE"}
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("python 41 | the C extension mvactors.vm._fastcall did not import"), out
    assert "reinstall mvactors where a C compiler works" in out, out


@pytest.mark.parametrize("export_id", [1, 2])
def test_values_agree(guest: bytes, export_id: int) -> None:
    with mvactors.VM.restore(guest, {1: lambda x: x}) as vm:
        fn = vm.exports[export_id]
        for value in VALUES:
            fast, pure = both(fn, value)
            assert fast == pure, value


def test_several_arguments_agree(guest: bytes) -> None:
    with mvactors.VM.restore(guest, {1: lambda x: x}) as vm:
        pick, same = vm.exports[3], vm.exports[9]
        for args in [(1, 2, 3), (None, True, False), (0x1FFF, -0x2000, 0), (2.5, "x", None), (1,), ()]:
            assert both(pick, *args)[0] == both(pick, *args)[1], args
        for args in [(1, 1), (True, True), (None, None), (-0x2000, -0x2000), (0x2000, 0x2000), ("a", "a")]:
            assert both(same, *args) == (("value", "True"), ("value", "True")), args
        assert both(vm.exports[8]) == (("value", "None"), ("value", "None"))
        too_many = tuple(range(1000))
        fast, pure = both(pick, *too_many)
        assert fast == pure and fast[0] == "TypeError", fast


def test_keyword_arguments_fail_alike(guest: bytes) -> None:
    with mvactors.VM.restore(guest, {1: lambda x: x}) as vm:
        fn = vm.exports[1]
        assert outcome(lambda: fn(x=1)) == outcome(lambda: type(fn)._py_call(fn, x=1))


def test_guest_errors_agree(guest: bytes) -> None:
    with mvactors.VM.restore(guest, {1: lambda x: x}) as vm:
        for value in [1, -0x2000, None, True, "boom", 1.5]:
            fast, pure = both(vm.exports[4], value)
            assert fast == pure and fast[0] == "GuestError", (value, fast, pure)


def test_host_function_errors_agree(guest: bytes) -> None:
    def host(x: int) -> int:
        if x == 13:
            raise ValueError("unlucky")
        return x * 2

    with mvactors.VM.restore(guest, {1: host}) as vm:
        fn = vm.exports[7]
        assert both(fn, 20) == (("value", "41"), ("value", "41"))
        fast, pure = both(fn, 13)
        assert fast == pure and fast[0] == "HostFunctionError", fast


def test_gas_exhaustion_agrees(guest: bytes) -> None:
    with mvactors.VM.restore(guest, {1: lambda x: x}) as vm:
        fn = vm.exports[5]
        results = []
        for call in (lambda: fn(1000), lambda: type(fn)._py_call(fn, 1000)):
            vm.stop_after_n_instructions(50)
            results.append(outcome(call))
            vm.stop_after_n_instructions(-1)
        assert results[0] == results[1] and results[0][0] == "GasExhausted", results
        assert both(fn, 100) == (("value", "100"), ("value", "100"))  # the VM stays usable


def test_hard_stop_agrees(guest: bytes) -> None:
    results = []
    for pure in (False, True):
        vm = mvactors.VM.restore(guest, {1: lambda x: x}, time_limit=0.05)
        fn = vm.exports[6]
        results.append(outcome(lambda: type(fn)._py_call(fn) if pure else fn()))  # noqa: B023
        results.append(outcome(lambda: vm.exports[2](1)))  # noqa: B023 - the VM is unusable after
        vm.close()
    assert results[0] == results[2] and results[0][0] == "TimeLimitExceeded", results
    assert results[1] == results[3] and results[1][0] == "VMUnusable", results


def test_closed_vm_agrees(guest: bytes) -> None:
    vm = mvactors.VM.restore(guest, {1: lambda x: x})
    fn = vm.exports[2]
    vm.close()
    fast, pure = both(fn, 1)
    assert fast == pure and fast[0] == "VMUnusable", fast


# ---- host calls: the C dispatcher against the Python callback (in a MVACTORS_PURE=1 process) ----

HOST_GUEST = """
const h = vmImport(1);
vmExport(1, (x) => h(x));
vmExport(2, (a, b, c) => h(a, b, c));
vmExport(3, (x) => { try { return h(x); } catch (e) { return 'caught'; } });
vmExport(4, (x) => h(x) === x);
"""

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Awaitable:
    def __await__(self) -> Any:
        yield


def host_table() -> list[tuple[str, str]]:
    """Outcomes of guest -> host calls over a table of arguments, results and failures (both paths run it)."""
    from tests.conftest import compile_source

    data = compile_source(HOST_GUEST)
    found: list[tuple[str, str]] = []
    seen: list[Any] = []

    def echo(*args: Any) -> Any:
        seen.append(args)
        return args[0] if len(args) == 1 else list(args)

    with mvactors.VM.restore(data, {1: echo}) as vm:
        for value in VALUES:
            found.append(outcome(lambda: vm.exports[1](value)))  # noqa: B023
            found.append(outcome(lambda: vm.exports[4](value)))  # noqa: B023
        for args in [(1, True, None), (0x1FFF, -0x2000, False), (2.5, "x", mvactors.null), ()]:
            found.append(outcome(lambda: vm.exports[2](*args)))  # noqa: B023
        found.append(("seen", repr(seen)))
    results: list[Any] = [None, True, False, 0, -0x2000, 0x1FFF, 0x2000, -0x2001, 2**40, 0.5, -0.0, math.nan,
                          "", "héllo", [1, 2], {"a": 1}, mvactors.null, 2**60, object(), _Awaitable()]
    for result in results:
        with mvactors.VM.restore(data, {1: lambda _x: result}) as vm:  # noqa: B023
            found.append(outcome(lambda: vm.exports[1](1)))
            found.append(outcome(lambda: vm.exports[3](1)))

    def boom(_x: Any) -> Any:
        raise KeyError("boom")

    with mvactors.VM.restore(data, {1: boom}) as vm:
        found.append(outcome(lambda: vm.exports[1](1)))
        found.append(outcome(lambda: vm.exports[3](1)))  # a host error unwinds past guest try/catch
        try:
            vm.exports[1](1)
        except mvactors.HostFunctionError as exc:
            found.append(("cause", repr(exc.__cause__) + str(exc.__cause__.__traceback__ is not None)))
    vms: list[mvactors.VM] = []

    def close_me(x: Any) -> Any:
        vms[0].close()
        return x

    vms.append(mvactors.VM.restore(data, {1: close_me}))
    found.append(outcome(lambda: vms[0].exports[1](1)))
    return found


def test_host_calls_agree_with_the_pure_path() -> None:
    script = "import json; from tests.vm.test_call_paths import host_table; print(json.dumps(host_table()))"
    pure = subprocess.run([sys.executable, "-c", script], env={**os.environ, "MVACTORS_PURE": "1"}, cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout
    expected = [tuple(row) for row in json.loads(pure)]
    assert host_table() == expected
