"""Host (import) functions as the guest calls them (tests/guest/host.js)."""

from __future__ import annotations

import math

import pytest

import mvactors
from mvactors import null

BUMP, CALL_HOST, CALL_HOST_WITH_MANY, CALL_HOST_WITH_NOTHING, PASS_OBJECT = 1, 2, 3, 4, 5
PASS_REGISTRY, REGISTRY_SIZE, HOST_RESULT_PLUS_ONE, SAME_AS_REGISTRY, DESCRIBE_HOST_RESULT = 6, 7, 8, 9, 10
ALLOCATE_AROUND_HOST = 11


class Host:
    def __init__(self) -> None:
        self.vm: mvactors.VM | None = None
        self.received: list[tuple] = []
        self.behaviour = lambda *args: args[0] if args else None

    def __call__(self, *args):
        self.received.append(args)
        return self.behaviour(*args)


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.fixture
def vm(make_vm, host):
    vm = make_vm("host", {1: host})
    host.vm = vm
    return vm


def test_host_receives_mapped_arguments(vm, host):
    host.behaviour = lambda *args: len(args)
    assert vm.exports[CALL_HOST_WITH_MANY]() == 7
    (args,) = host.received
    assert args[0] == 1 and type(args[0]) is int
    assert args[1] == "two"
    assert args[2] is null
    assert args[3] is None
    assert args[4].to_python() == [3]
    assert args[5] == 2.5
    assert args[6] is True


def test_host_called_without_arguments(vm, host):
    host.behaviour = lambda *args: "no args" if not args else "args"
    assert vm.exports[CALL_HOST_WITH_NOTHING]() == "no args"
    assert host.received == [()]


@pytest.mark.parametrize(
    ("value", "description"),
    [(None, "undefined"), (null, "null"), (1, "number"), (math.nan, "number"), ("s", "string"),
     (True, "boolean"), ([1], "object"), ({"a": 1}, "object"), (b"\x01", "object")],
)
def test_host_return_values_are_mapped_in(vm, host, value, description):
    host.behaviour = lambda x: value
    assert vm.exports[DESCRIBE_HOST_RESULT](0) == description


def test_host_return_value_used_by_the_guest(vm, host):
    host.behaviour = lambda x: x * 10
    assert vm.exports[HOST_RESULT_PLUS_ONE](4) == 41
    host.behaviour = lambda x: 2**40
    assert vm.exports[HOST_RESULT_PLUS_ONE](0) == 2**40 + 1
    host.behaviour = lambda x: "str"
    assert vm.exports[HOST_RESULT_PLUS_ONE](0) == "str1"


def test_host_receives_guest_objects_as_live_proxies(vm, host):
    def behaviour(obj):
        # Inside the host call: read attributes, copy, and call a guest closure (re-entering the VM).
        return [obj.a, obj.nested.to_python(), obj.fn(21), sorted(obj.keys())]

    host.behaviour = behaviour
    assert vm.exports[PASS_OBJECT]().to_python() == [1, [1, 2], 42, ["a", "fn", "nested"]]


def test_host_can_keep_a_proxy_after_the_call(vm, host):
    kept = []
    host.behaviour = lambda registry: kept.append(registry)
    vm.exports[PASS_REGISTRY]()
    registry = kept[0]
    vm.run_gc(squeeze=True)
    entries = registry.entries
    entries[0] = "from python"
    entries[1] = {"k": 1}
    assert vm.exports[REGISTRY_SIZE]() == 2
    assert vm.exports[SAME_AS_REGISTRY](registry) is True
    assert registry.to_python() == {"entries": ["from python", {"k": 1}]}


def test_host_returning_a_proxy_passes_it_by_reference(vm, host):
    kept = []
    host.behaviour = lambda registry: kept.append(registry)
    vm.exports[PASS_REGISTRY]()
    host.behaviour = lambda x: kept[0]
    assert vm.exports[SAME_AS_REGISTRY](vm.exports[CALL_HOST](0)) is True


def test_host_can_reenter_the_vm(vm, host):
    host.behaviour = lambda x: host.vm.exports[BUMP]() + x
    assert vm.exports[CALL_HOST](100) == 101
    assert vm.exports[CALL_HOST](100) == 102
    assert vm.exports[BUMP]() == 3


def test_host_error_inside_reentrant_call(vm, host):
    def behaviour(x):
        if x == "inner":
            raise LookupError("inner failure")
        return host.vm.exports[CALL_HOST]("inner")

    host.behaviour = behaviour
    with pytest.raises(mvactors.HostFunctionError) as info:
        vm.exports[CALL_HOST]("outer")
    assert isinstance(info.value.__cause__, (LookupError, mvactors.HostFunctionError))
    host.behaviour = lambda x: x
    assert vm.exports[CALL_HOST]("fine") == "fine"
    assert vm.exports[BUMP]() == 1


def test_import_function_identity_through_the_guest(vm, host):
    host.behaviour = lambda x: x
    assert vm.exports[CALL_HOST](host) is host


def test_gc_run_by_the_host_during_a_guest_call_keeps_live_values(vm, host):
    seen = []

    def behaviour(local):
        host.vm.run_gc(squeeze=True)
        seen.append(local.to_python())
        host.vm.run_gc(squeeze=True)

    host.behaviour = behaviour
    for i in range(1, 6):
        out = vm.exports[ALLOCATE_AROUND_HOST]({"name": "bob" * i, "list": [10, 20 + i]})
        assert out.to_python() == [3, "x" + "bob" * i, "bob" * i, 20 + i, 50]
    assert seen[0] == {"a": [1, 2, 3], "s": "xbob"}
    assert len(seen) == 5
