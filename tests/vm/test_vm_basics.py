"""VM.restore inputs, exports, versions and the VM's lifetime (`with vm:`)."""

from __future__ import annotations

import re

import pytest

import mvactors
from mvactors import MicroviumError


def test_hello_world(snapshot):
    printed = []
    vm = mvactors.VM.restore(snapshot("hello"), imports={1: printed.append})
    with vm:
        assert vm.exports[1]("World") == "greeted World"
        assert printed == ["Hello, World!"]
        assert vm.exports[1]("again") == "greeted again"
        assert printed == ["Hello, World!", "Hello, again!"]


def test_compile_accepts_source_and_path(snapshot, tmp_path):
    source = "const p = vmImport(1);\nvmExport(1, (x) => p(x + 1));\n"
    script = tmp_path / "inc.js"
    script.write_text(source, encoding="utf-8")
    from_text = mvactors.compile(source)
    from_path = mvactors.compile(script)
    from_str_path = mvactors.compile(str(script))
    assert isinstance(from_text, bytes)
    assert from_text[0] == 8  # bytecode version of Microvium 8.0.0
    for data in (from_text, from_path, from_str_path):
        got = []
        with mvactors.VM.restore(data, imports={1: got.append}) as vm:
            vm.exports[1](41)
        assert got == [42]


def test_compile_error_is_a_microvium_error():
    with pytest.raises(MicroviumError):
        mvactors.compile("const x = ;\n")
    with pytest.raises(MicroviumError):
        mvactors.compile("label: for (;;) { break label; }\n")


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(bytes, id="bytes"),
        pytest.param(bytearray, id="bytearray"),
        pytest.param(memoryview, id="memoryview"),
        pytest.param(list, id="list-of-ints"),
        pytest.param(tuple, id="tuple-of-ints"),
    ],
)
def test_restore_accepts_buffer_and_sequence_inputs(snapshot, convert):
    printed = []
    with mvactors.VM.restore(convert(snapshot("hello")), imports={1: printed.append}) as vm:
        assert vm.exports[1]("x") == "greeted x"
    assert printed == ["Hello, x!"]


@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_restore_from_file_path(snapshot, tmp_path, as_str):
    path = tmp_path / "hello.mvm-bc"
    path.write_bytes(snapshot("hello"))
    printed = []
    with mvactors.VM.restore(str(path) if as_str else path, imports={1: printed.append}) as vm:
        vm.exports[1]("file")
    assert printed == ["Hello, file!"]


def test_restore_does_not_alias_a_mutable_buffer(snapshot):
    data = bytearray(snapshot("hello"))
    printed = []
    vm = mvactors.VM.restore(data, imports={1: printed.append})
    with vm:
        data[:] = bytes(len(data))  # the VM must have its own copy of the bytecode
        assert vm.exports[1]("still") == "greeted still"
    assert printed == ["Hello, still!"]


def test_imports_argument_is_optional_when_the_snapshot_imports_nothing(compile_js):
    data = compile_js("vmExport(7, (a, b) => a * b);\n")
    with mvactors.VM.restore(data) as vm:
        assert vm.exports[7](6, 7) == 42


def test_unknown_export_raises_a_clear_lookup_error(make_vm):
    vm = make_vm("hello", {1: print})
    with pytest.raises(LookupError) as info:
        vm.exports[99]
    assert "99" in str(info.value)
    assert vm.exports[1]("still there") == "greeted still there"


def test_exports_are_cached_function_proxies(make_vm):
    vm = make_vm("values", {2: print, 3: print})
    f = vm.exports[1]
    assert callable(f)
    assert f(5) == 5
    assert vm.exports[1](6) == 6


def test_versions(make_vm):
    vm = make_vm("hello", {1: print})
    for version in (vm.engine_version, vm.required_engine_version):
        assert isinstance(version, str)
        assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert vm.engine_version == "8.0.0"
    assert vm.required_engine_version.split(".")[0] == "8"


def test_many_vms_are_independent(snapshot):
    data = snapshot("counter")
    vms = [mvactors.VM.restore(data, imports={1: print}) for _ in range(5)]
    try:
        for i, vm in enumerate(vms):
            vm.exports[1](i + 1)
        assert [vm.exports[2]() for vm in vms] == [1, 2, 3, 4, 5]
    finally:
        for vm in vms:
            with vm:
                pass


def test_with_block_closes_the_vm(snapshot):
    printed = []
    vm = mvactors.VM.restore(snapshot("hello"), imports={1: printed.append})
    with vm as entered:
        assert entered is vm
        vm.exports[1]("inside")
    with pytest.raises(MicroviumError):
        vm.exports[1]("after")
    assert printed == ["Hello, inside!"]


def test_closed_vm_rejects_every_operation(snapshot):
    vm = mvactors.VM.restore(snapshot("counter"), imports={1: print})
    with vm:
        fn = vm.exports[1]
        log = vm.exports[3]()
    with pytest.raises(MicroviumError):
        fn(1)
    with pytest.raises(MicroviumError):
        len(log)
    with pytest.raises(MicroviumError):
        vm.create_snapshot()
    with pytest.raises(MicroviumError):
        vm.run_gc()
    with pytest.raises(MicroviumError):
        vm.get_memory_stats()
    with pytest.raises(MicroviumError):
        vm.stop_after_n_instructions(10)
    with pytest.raises(MicroviumError):
        vm.get_remaining_instructions()


def test_with_block_closes_the_vm_when_the_body_raises(snapshot):
    vm = mvactors.VM.restore(snapshot("hello"), imports={1: print})
    with pytest.raises(ZeroDivisionError), vm:
        1 / 0  # noqa: B018
    with pytest.raises(MicroviumError):
        vm.exports[1]("after")


def test_closing_twice_is_harmless(snapshot):
    vm = mvactors.VM.restore(snapshot("hello"), imports={1: print})
    with vm:
        pass
    with vm:
        pass
    with pytest.raises(MicroviumError):
        vm.exports[1]("after")


@pytest.mark.anyio
async def test_async_with_closes_the_vm(snapshot):
    printed = []
    vm = mvactors.VM.restore(snapshot("hello"), imports={1: printed.append})
    async with vm as entered:
        assert entered is vm
        assert vm.exports[1]("async") == "greeted async"
    with pytest.raises(MicroviumError):
        vm.exports[1]("after")
    assert printed == ["Hello, async!"]


def test_a_closed_vm_does_not_disturb_new_ones(snapshot):
    data = snapshot("counter")
    for i in range(20):
        with mvactors.VM.restore(data, imports={1: print}) as vm:
            assert vm.exports[2]() == 0  # fresh state every time
            assert vm.exports[1](i) == i
