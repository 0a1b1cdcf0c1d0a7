"""Error paths: guest throws, host errors, gas, fatal engine errors and bad snapshots."""

from __future__ import annotations

import struct

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mvactors
from mvactors import GasExhausted, GuestError, MicroviumError, null

# Export IDs of tests/guest/errors.js
THROW_VALUE, THROW_OBJECT, CALL_HOST, CATCH_HOST, SPIN, FOREVER, EXHAUST_HEAP, RECURSE = range(1, 9)


class Boom(Exception):
    pass


def raising_host(x):
    if x == "raise":
        raise Boom("host failed on purpose")
    return x * 2


@pytest.fixture
def vm(make_vm):
    return make_vm("errors", {1: raising_host})


# ---------------------------------------------------------------- guest throw


@pytest.mark.parametrize("value", ["text", 42, 1.5, True, None, null, [1, "a"], {"k": "v"}])
def test_guest_throw_carries_the_value(vm, value):
    with pytest.raises(GuestError) as info:
        vm.exports[THROW_VALUE](value)
    got = info.value.value
    if hasattr(got, "to_python"):
        got = got.to_python()
    if value is None or value is null or isinstance(value, bool):
        assert got is value
    else:
        assert type(got) is type(value)
        assert got == value


def test_guest_error_is_a_microvium_error_with_a_code(vm):
    with pytest.raises(MicroviumError) as info:
        vm.exports[THROW_OBJECT]("bad input")
    err = info.value
    assert isinstance(err, GuestError)
    assert err.value.name == "GuestFailure"
    assert err.value.message == "bad input"
    assert isinstance(err.code, str) and err.code.startswith("MVM_E_")
    assert "bad input" in str(err) or "GuestFailure" in str(err)


def test_vm_usable_after_guest_throw(vm):
    for _ in range(20):
        with pytest.raises(GuestError):
            vm.exports[THROW_VALUE]("again")
    assert vm.exports[SPIN](10) == 10
    assert vm.exports[CALL_HOST](4) == 9


# ---------------------------------------------------------------- host errors


def test_host_exception_propagates_as_host_function_error(vm):
    with pytest.raises(mvactors.HostFunctionError) as info:
        vm.exports[CALL_HOST]("raise")
    err = info.value
    assert isinstance(err, MicroviumError)
    assert err.code == "MVM_E_HOST_ERROR"
    assert isinstance(err.__cause__, Boom)
    assert str(err.__cause__) == "host failed on purpose"


def test_vm_usable_after_host_exception(vm):
    for _ in range(5):
        with pytest.raises(mvactors.HostFunctionError):
            vm.exports[CALL_HOST]("raise")
    assert vm.exports[CALL_HOST](20) == 41
    assert vm.exports[SPIN](100) == 100
    with pytest.raises(GuestError):
        vm.exports[THROW_VALUE](1)
    assert vm.exports[CALL_HOST](1) == 3


def test_host_exception_is_not_catchable_by_the_guest(vm):
    with pytest.raises(mvactors.HostFunctionError) as info:
        vm.exports[CATCH_HOST]("raise")
    assert isinstance(info.value.__cause__, Boom)
    assert vm.exports[CATCH_HOST](2) == 4


@pytest.mark.parametrize("exc", [ValueError("v"), KeyError("k"), RuntimeError("r"), ZeroDivisionError()])
def test_any_exception_type_is_wrapped(make_vm, exc):
    def host(x):
        raise exc

    vm = make_vm("errors", {1: host})
    with pytest.raises(mvactors.HostFunctionError) as info:
        vm.exports[CALL_HOST](1)
    assert info.value.__cause__ is exc


def _raises_caused_by(call, cause_type):
    """``call()`` raises cause_type itself, or a MicroviumError caused by it."""
    with pytest.raises((cause_type, MicroviumError)) as info:
        call()
    err = info.value
    if isinstance(err, MicroviumError):
        assert isinstance(err.__cause__, cause_type), repr(err)


def test_host_returning_an_unsupported_value_is_an_error(make_vm):
    vm = make_vm("errors", {1: lambda x: object()})
    _raises_caused_by(lambda: vm.exports[CALL_HOST](1), TypeError)


def test_host_returning_an_unsafe_int_is_an_error(make_vm):
    vm = make_vm("errors", {1: lambda x: 2**60})
    _raises_caused_by(lambda: vm.exports[CALL_HOST](1), OverflowError)


# ---------------------------------------------------------------- gas


def test_gas_exhaustion_and_reset(vm):
    vm.stop_after_n_instructions(200)
    with pytest.raises(GasExhausted) as info:
        vm.exports[SPIN](1_000_000)
    assert isinstance(info.value, MicroviumError)
    assert info.value.code == "MVM_E_INSTRUCTION_COUNT_REACHED"
    assert vm.get_remaining_instructions() <= 0
    # Like the engine: further calls fail until the counter is reset.
    with pytest.raises(GasExhausted):
        vm.exports[SPIN](1)
    vm.stop_after_n_instructions(-1)
    assert vm.exports[SPIN](1000) == 1000
    assert vm.get_remaining_instructions() == -1


def test_infinite_loop_is_stopped_by_gas(vm):
    vm.stop_after_n_instructions(10_000)
    with pytest.raises(GasExhausted):
        vm.exports[FOREVER]()
    vm.stop_after_n_instructions(1_000_000)
    assert vm.exports[SPIN](50) == 50


def test_gas_counts_down(vm):
    vm.stop_after_n_instructions(100_000)
    assert vm.get_remaining_instructions() == 100_000
    assert vm.exports[SPIN](10) == 10
    after_10 = vm.get_remaining_instructions()
    assert 0 < after_10 < 100_000
    assert vm.exports[SPIN](100) == 100
    after_110 = vm.get_remaining_instructions()
    assert 0 < after_110 < after_10
    # the cost grows with the work done
    assert after_10 - after_110 > 100_000 - after_10


def test_gas_budget_just_enough(vm):
    vm.stop_after_n_instructions(1_000_000)
    vm.exports[SPIN](20)
    cost = 1_000_000 - vm.get_remaining_instructions()
    vm.stop_after_n_instructions(cost)
    assert vm.exports[SPIN](20) == 20
    vm.stop_after_n_instructions(cost - 1)
    with pytest.raises(GasExhausted):
        vm.exports[SPIN](20)


def test_gas_disabled_by_default(vm):
    assert vm.get_remaining_instructions() == -1
    assert vm.exports[SPIN](20_000) == 20_000


# ---------------------------------------------------------------- fatal errors


def test_out_of_memory_is_fatal_for_that_vm_only(make_vm):
    doomed = make_vm("errors", {1: raising_host})
    survivor = make_vm("errors", {1: raising_host})
    with pytest.raises(MicroviumError) as info:
        doomed.exports[EXHAUST_HEAP]()
    assert not isinstance(info.value, (GuestError, GasExhausted))
    # The VM is marked unusable: every further use raises MicroviumError.
    with pytest.raises(MicroviumError):
        doomed.exports[SPIN](1)
    with pytest.raises(MicroviumError):
        doomed.exports[CALL_HOST](1)
    with pytest.raises(MicroviumError):
        doomed.create_snapshot()
    # Other VMs, existing and new, are unaffected.
    assert survivor.exports[SPIN](10) == 10
    fresh = make_vm("errors", {1: raising_host})
    assert fresh.exports[CALL_HOST](5) == 11


def test_out_of_memory_many_times_does_not_leak_or_crash(snapshot):
    data = snapshot("errors")
    for _ in range(5):
        with mvactors.VM.restore(data, imports={1: raising_host}) as vm, pytest.raises(MicroviumError):
            vm.exports[EXHAUST_HEAP]()
    with mvactors.VM.restore(data, imports={1: raising_host}) as vm:
        assert vm.exports[SPIN](3) == 3


def test_unbounded_recursion_raises(vm):
    with pytest.raises(MicroviumError) as info:
        vm.exports[RECURSE](0)
    assert not isinstance(info.value, GuestError)


@pytest.mark.anyio
async def test_async_import_from_script_without_await_is_fatal(make_vm):
    called = []

    async def async_host(x):
        called.append(x)
        return x

    vm = make_vm("noawait", {5: async_host, 1: lambda x: x + 1})
    async with vm:
        assert vm.exports[2](1) == 2
        with anyio.fail_after(5), pytest.raises(MicroviumError):
            vm.exports[1](7)
        with pytest.raises(MicroviumError):
            vm.exports[2](1)
    assert called == []


@pytest.mark.anyio
async def test_async_import_wrapped_from_script_without_await_is_fatal(make_vm):
    async def impl(x):
        return x

    vm = make_vm("noawait", {5: mvactors.async_import(impl), 1: lambda x: x})
    async with vm:
        with pytest.raises(MicroviumError):
            vm.exports[1](7)
        with pytest.raises(MicroviumError):
            vm.exports[2](1)


# ---------------------------------------------------------------- restore errors


def test_missing_import_names_the_id(snapshot):
    with pytest.raises(MicroviumError) as info:
        mvactors.VM.restore(snapshot("errors"), imports={})
    assert info.value.code == "MVM_E_UNRESOLVED_IMPORT"
    assert "1" in str(info.value)


def test_missing_one_of_several_imports(snapshot):
    with pytest.raises(MicroviumError) as info:
        mvactors.VM.restore(snapshot("values"), imports={2: print})
    assert info.value.code == "MVM_E_UNRESOLVED_IMPORT"
    assert "3" in str(info.value)


def test_extra_imports_are_fine(snapshot):
    with mvactors.VM.restore(snapshot("errors"), imports={1: raising_host, 2: print, 500: len}) as vm:
        assert vm.exports[CALL_HOST](1) == 3


@pytest.mark.parametrize("size", [0, 1, 10, 27, 28, 40])
def test_truncated_snapshot_prefix(snapshot, size):
    data = snapshot("hello")[:size]
    with pytest.raises(MicroviumError):
        mvactors.VM.restore(data, imports={1: print})


def test_snapshot_missing_its_last_byte(snapshot):
    with pytest.raises(MicroviumError):
        mvactors.VM.restore(snapshot("hello")[:-1], imports={1: print})


def test_snapshot_with_trailing_garbage(snapshot):
    with pytest.raises(MicroviumError):
        mvactors.VM.restore(snapshot("hello") + b"\x00\x00", imports={1: print})


def test_flipped_byte_is_a_crc_error(snapshot):
    data = bytearray(snapshot("hello"))
    data[len(data) // 2] ^= 0x40
    with pytest.raises(MicroviumError) as info:
        mvactors.VM.restore(data, imports={1: print})
    assert info.value.code == "MVM_E_BYTECODE_CRC_FAIL"


def test_wrong_crc_field_is_a_crc_error(snapshot):
    data = bytearray(snapshot("hello"))
    crc = struct.unpack_from("<H", data, 6)[0]
    struct.pack_into("<H", data, 6, crc ^ 1)
    with pytest.raises(MicroviumError) as info:
        mvactors.VM.restore(data, imports={1: print})
    assert info.value.code == "MVM_E_BYTECODE_CRC_FAIL"


@pytest.mark.parametrize("version", [0, 7, 9, 255])
def test_wrong_bytecode_version(snapshot, version):
    data = bytearray(snapshot("hello"))
    data[0] = version  # not covered by the CRC
    with pytest.raises(MicroviumError) as info:
        mvactors.VM.restore(data, imports={1: print})
    assert info.value.code == "MVM_E_WRONG_BYTECODE_VERSION"


def test_snapshot_requiring_a_later_engine(snapshot):
    data = bytearray(snapshot("hello"))
    data[2] = 200  # requiredEngineVersion (minor), not covered by the CRC
    with pytest.raises(MicroviumError) as info:
        mvactors.VM.restore(data, imports={1: print})
    assert info.value.code == "MVM_E_REQUIRES_LATER_ENGINE"


def test_not_a_snapshot_at_all():
    with pytest.raises(MicroviumError):
        mvactors.VM.restore(b"this is definitely not a Microvium snapshot, just text" * 3)
    with pytest.raises(MicroviumError):
        mvactors.VM.restore(bytes(4096))


def test_too_large_snapshot_is_rejected():
    with pytest.raises(MicroviumError):
        mvactors.VM.restore(bytes(70_000))


def test_bad_snapshot_argument_types():
    with pytest.raises(TypeError):
        mvactors.VM.restore(12345)
    with pytest.raises((TypeError, ValueError)):
        mvactors.VM.restore([1, 2, 300] * 20)


def test_missing_snapshot_file(tmp_path):
    with pytest.raises((FileNotFoundError, MicroviumError)):
        mvactors.VM.restore(tmp_path / "nope.mvm-bc")


def test_failed_restores_leave_the_process_healthy(snapshot):
    data = snapshot("hello")
    for size in range(0, len(data), 7):
        with pytest.raises(MicroviumError):
            mvactors.VM.restore(data[:size], imports={1: print})
    printed = []
    with mvactors.VM.restore(data, imports={1: printed.append}) as vm:
        vm.exports[1]("ok")
    assert printed == ["Hello, ok!"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_corrupted_snapshot_never_crashes(snapshot, data):
    original = snapshot("hello")
    corrupted = bytearray(original)
    # Change one byte, or two adjacent bytes, of the CRC-covered region (after
    # the 8-byte header prefix): CRC-16 detects every burst of up to 16 bits.
    i = data.draw(st.integers(8, len(corrupted) - 2), label="offset")
    width = data.draw(st.integers(1, 2), label="width")
    corrupted[i : i + width] = data.draw(st.binary(min_size=width, max_size=width), label="bytes")
    if bytes(corrupted) == original:
        return
    with pytest.raises(MicroviumError) as info:
        mvactors.VM.restore(corrupted, imports={1: print})
    assert info.value.code == "MVM_E_BYTECODE_CRC_FAIL"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_mangled_snapshot_never_crashes_or_hangs(snapshot, data):
    """Any truncation, extension or header damage: a MicroviumError or a working VM, never a crash."""
    original = snapshot("hello")
    mangled = bytearray(original)
    header_offset = data.draw(st.integers(0, 7), label="header byte")
    mangled[header_offset] = data.draw(st.integers(0, 255), label="value")
    cut = data.draw(st.integers(0, len(mangled) + 4), label="cut")
    mangled = mangled[:cut] + bytes(max(0, cut - len(mangled)))
    try:
        vm = mvactors.VM.restore(mangled, imports={1: print})
    except MicroviumError:
        return
    with vm:
        assert bytes(mangled) == original or vm.exports[1]("x") == "greeted x"


@pytest.mark.parametrize(
    "value",
    [bytes(70_000), "x" * 70_000, list(range(5_000)), {"k": bytes(50_000)}],
    ids=["bytes", "str", "list", "nested"],
)
def test_arguments_too_large_for_the_vm_raise(make_vm, value):
    vm = make_vm("errors", {1: raising_host})
    other = make_vm("errors", {1: raising_host})
    with pytest.raises(MicroviumError):
        vm.exports[THROW_VALUE](value)
    assert other.exports[SPIN](3) == 3
