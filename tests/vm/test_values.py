"""Value mapping between Python and the guest, in both directions (tests/guest/values.js)."""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Iterator

import pytest
from conftest import compile_guest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mvactors
from mvactors import MicroviumError, null

# Export IDs of tests/guest/values.js
IDENTITY, TYPE_OF, IS_NULL, IS_UNDEFINED, IS_NEG_ZERO, IS_NAN = 1, 2, 3, 4, 5, 6
KEYS_OF, LENGTH_OF, ITEM_AT, GET_PROP, SET_PROP, SAME_REF, BYTES_SUM, SHOW, SHOW_BYTES = 7, 8, 9, 10, 11, 12, 13, 14, 15
MAKE_VALUES, MAKE_NUMBER, MAKE_BYTES, MAKE_NESTED_WITH_BYTES, MAKE_CLOSURE = 20, 21, 22, 23, 24
MAKE_OBJECT_WITH_METHOD, GET_POINT_CLASS, MAKE_POINT, MAKE_ARRAY = 25, 26, 27, 28
GET_HOST_TWO, GET_HOST_THREE, CALL_HOST_TWO, CALL_WITH, RETURN_ARGS = 30, 31, 32, 33, 34
KEEP, GET_KEPT = 40, 41

MAX_SAFE = 2**53


def host_two(x):
    return ("two", x)


def host_three(x):
    return x * 3


@pytest.fixture
def vm(make_vm):
    return make_vm("values", {2: host_two, 3: host_three})


@contextlib.contextmanager
def fresh_vm() -> Iterator[mvactors.VM]:
    """A new VM per property-based example, so examples cannot affect each other."""
    with mvactors.VM.restore(compile_guest("values"), imports={2: host_two, 3: host_three}) as vm:
        yield vm


def same_float(a: float, b: float) -> bool:
    """Exact equality of floats, telling -0.0 from 0.0; any NaN equals any NaN (JS has one NaN)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return struct.pack("<d", a) == struct.pack("<d", b)


def expected_number_out(x: float | int) -> float | int:
    """What a guest number comes back as: int when integral (and not -0) within ±2**53, else float."""
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x) or same_float(x, -0.0)):
        return x
    if float(x).is_integer() and -MAX_SAFE <= x <= MAX_SAFE:
        return int(x)
    return float(x)


def assert_number(out, expected):
    assert type(out) is type(expected), (out, expected)
    if isinstance(expected, float):
        assert same_float(out, expected), (out, expected)
    else:
        assert out == expected


# ---------------------------------------------------------------- Python -> guest


@pytest.mark.parametrize(
    ("value", "guest_type"),
    [
        (None, "undefined"),
        (null, "object"),
        (True, "boolean"),
        (False, "boolean"),
        (0, "number"),
        (-1, "number"),
        (2**40, "number"),
        (1.5, "number"),
        (math.nan, "number"),
        (math.inf, "number"),
        ("text", "string"),
        ("", "string"),
        (b"\x00\x01", "object"),
        (bytearray(b"ab"), "object"),
        (memoryview(b"abc"), "object"),
        ([1, 2], "object"),
        ((1, 2), "object"),
        ({"a": 1}, "object"),
    ],
)
def test_typeof_values_passed_in(vm, value, guest_type):
    assert vm.exports[TYPE_OF](value) == guest_type


def test_null_and_undefined_are_distinct_going_in(vm):
    assert vm.exports[IS_NULL](null) is True
    assert vm.exports[IS_UNDEFINED](null) is False
    assert vm.exports[IS_NULL](None) is False
    assert vm.exports[IS_UNDEFINED](None) is True
    assert vm.exports[IS_UNDEFINED]() is True  # missing arguments are undefined


def test_negative_zero_and_nan_go_in_exactly(vm):
    assert vm.exports[IS_NEG_ZERO](-0.0) is True
    assert vm.exports[IS_NEG_ZERO](0.0) is False
    assert vm.exports[IS_NEG_ZERO](0) is False
    assert vm.exports[IS_NAN](math.nan) is True
    assert vm.exports[IS_NAN](math.inf) is False


def test_show_what_the_guest_receives(vm):
    show = vm.exports[SHOW]
    assert show(None) == "undefined"
    assert show(null) == "null"
    assert show(True) == "true"
    assert show(-0.0) == "-0"
    assert show(math.nan) == "NaN"
    assert show(-math.inf) == "-Infinity"
    assert show(2**31) == "2147483648"
    assert show(-(2**31) - 1) == "-2147483649"
    assert show(0.5) == "0.5"
    assert show("x y") == "'x y'"
    assert show([1, [2, None], {"k": null}]) == "[1,[2,undefined],{k:null}]"
    assert show((1, "a")) == "[1,'a']"
    assert show({"b": 1, "a": [True, False]}) == "{b:1,a:[true,false]}"
    assert show({}) == "{}"
    assert show([]) == "[]"


def test_bytes_like_values_become_uint8arrays(vm):
    for data in (b"\x00\x7f\x80\xff", bytearray(b"\x00\x7f\x80\xff"), memoryview(b"\x00\x7f\x80\xff")):
        assert vm.exports[SHOW_BYTES](data) == "<0,127,128,255>"
        assert vm.exports[BYTES_SUM](data) == 0x7F + 0x80 + 0xFF
    assert vm.exports[SHOW_BYTES](b"") == "<>"
    assert vm.exports[LENGTH_OF](bytes(1000)) == 1000


def test_values_go_in_by_copy(vm):
    data = {"a": [1, 2]}
    proxy = vm.exports[IDENTITY](data)
    data["a"].append(3)
    data["b"] = 1
    assert proxy.to_python() == {"a": [1, 2]}
    buf = bytearray(b"xyz")
    view = vm.exports[IDENTITY](buf)
    buf[0] = 0
    assert bytes(view) == b"xyz"


@pytest.mark.parametrize("value", [2**53 + 1, -(2**53) - 1, 2**64, -(2**100)])
def test_ints_beyond_2_pow_53_raise_overflow_error(vm, value):
    with pytest.raises(OverflowError):
        vm.exports[IDENTITY](value)
    with pytest.raises(OverflowError):
        vm.exports[IDENTITY]([1, {"deep": value}])
    assert vm.exports[IDENTITY](7) == 7  # the VM is still fine


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**53 - 1])
def test_ints_at_2_pow_53_are_exact(vm, value):
    out = vm.exports[IDENTITY](value)
    assert type(out) is int
    assert out == value


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, frozenset(), 1 + 2j, type, Ellipsis, NotImplemented],
    ids=lambda v: type(v).__name__,
)
def test_unsupported_types_raise_type_error_naming_the_type(vm, value):
    with pytest.raises(TypeError) as info:
        vm.exports[IDENTITY](value)
    assert type(value).__name__ in str(info.value)
    with pytest.raises(TypeError):
        vm.exports[IDENTITY]([1, value])
    with pytest.raises(TypeError):
        vm.exports[IDENTITY]({"nested": value})


def test_dict_with_non_str_keys_raises_type_error(vm):
    with pytest.raises(TypeError):
        vm.exports[IDENTITY]({1: "x"})
    with pytest.raises(TypeError):
        vm.exports[IDENTITY]({("a",): "x"})


@pytest.mark.parametrize(
    "fn",
    [lambda x: x, print, len, host_three.__call__, type("C", (), {"__call__": lambda self: 1})()],
    ids=["lambda", "builtin", "len", "method-wrapper", "callable-instance"],
)
def test_foreign_callables_cannot_be_passed_in(vm, fn):
    with pytest.raises(TypeError) as info:
        vm.exports[IDENTITY](fn)
    assert "host functions cannot be passed to the VM" in str(info.value)


def test_import_map_function_not_imported_by_snapshot_cannot_be_passed_in(make_vm):
    def unused(x):
        return x

    vm = make_vm("values", {2: host_two, 3: host_three, 9: unused})
    with pytest.raises(TypeError):
        vm.exports[IDENTITY](unused)


def test_unsupported_value_error_leaves_vm_usable(vm):
    with pytest.raises(TypeError):
        vm.exports[IDENTITY]([1, 2, object()])
    assert vm.exports[IDENTITY]([1, 2]).to_python() == [1, 2]


# ---------------------------------------------------------------- guest -> Python


def test_make_values_maps_every_primitive(vm):
    values = vm.exports[MAKE_VALUES]()
    assert values.undef is None
    assert values.nul is null
    assert values.yes is True
    assert values.no is False
    assert_number(values.zero, 0)
    assert_number(values.negZero, -0.0)
    assert math.isnan(values.nan) and isinstance(values.nan, float)
    assert_number(values.inf, math.inf)
    assert_number(values.ninf, -math.inf)
    assert_number(values.int, 42)
    assert_number(values.neg, -7)
    assert_number(values.beyondInt32, 2**31)
    assert_number(values.float, 1.5)
    assert values.str == "h\u00e9llo \u2603"
    assert values.empty == ""
    assert values.to_python() == {
        "undef": None,
        "nul": null,
        "yes": True,
        "no": False,
        "zero": 0,
        "negZero": -0.0,
        "nan": values.to_python()["nan"],
        "inf": math.inf,
        "ninf": -math.inf,
        "int": 42,
        "neg": -7,
        "beyondInt32": 2**31,
        "float": 1.5,
        "str": "h\u00e9llo \u2603",
        "empty": "",
        "arr": [1, "two", [3]],
        "obj": {"a": 1, "b": {"c": null}},
    }
    assert math.isnan(values.to_python()["nan"])


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("negZero", -0.0),
        ("inf", math.inf),
        ("ninf", -math.inf),
        ("maxSafe", 2**53),
        ("beyondSafe", float(2**55)),
        ("half", 0.5),
        ("twoPointZero", 2),
    ],
)
def test_guest_numbers_out(vm, kind, expected):
    assert_number(vm.exports[MAKE_NUMBER](kind), expected)


def test_guest_nan_out(vm):
    out = vm.exports[MAKE_NUMBER]("nan")
    assert isinstance(out, float) and math.isnan(out)


def test_null_is_a_falsy_singleton():
    assert mvactors.null is null
    assert not null
    assert null is not None
    assert repr(null)


def test_object_proxy_get_set_keys_iter_len(vm):
    obj = vm.exports[IDENTITY]({"a": 1, "b": "two"})
    assert obj.a == 1
    assert obj["b"] == "two"
    assert obj.missing is None  # JS semantics: absent properties read as undefined
    assert list(obj.keys()) == ["a", "b"]
    assert list(obj) == ["a", "b"]
    assert len(obj) == 2
    obj.c = [1, 2]
    obj["d"] = {"e": null}
    assert vm.exports[SHOW](obj) == "{a:1,b:'two',c:[1,2],d:{e:null}}"
    obj.a = 10
    assert vm.exports[GET_PROP](obj, "a") == 10
    vm.exports[SET_PROP](obj, "z", 26)
    assert obj.z == 26
    assert list(obj.keys()) == ["a", "b", "c", "d", "z"]


def test_array_proxy_get_set_len_iter(vm):
    arr = vm.exports[MAKE_ARRAY](5)
    assert len(arr) == 5
    assert list(arr) == [0, 1, 4, 9, 16]
    assert arr[3] == 9
    arr[0] = "zero"
    assert vm.exports[ITEM_AT](arr, 0) == "zero"
    arr[5] = 25
    assert len(arr) == 6
    assert vm.exports[LENGTH_OF](arr) == 6
    assert arr.to_python() == ["zero", 1, 4, 9, 16, 25]
    assert vm.exports[SHOW](arr) == "['zero',1,4,9,16,25]"


def test_indexes_count_from_the_end_and_the_error_names_the_index_given(vm):
    arr = vm.exports[MAKE_ARRAY](3)
    view = vm.exports[MAKE_BYTES]()
    assert arr[-1] == 4
    view[-1] = 9
    assert bytes(view) == b"\x01\x02\x03\x04\x09"
    with pytest.raises(IndexError, match=r"^guest array index -4 out of range \(length 3\)$"):
        arr[-4]
    with pytest.raises(IndexError, match=r"^Uint8Array index 5 out of range \(length 5\)$"):
        view[5] = 0


def test_proxies_go_back_by_reference(vm):
    obj = vm.exports[IDENTITY]({"n": 1})
    assert vm.exports[SAME_REF](obj, obj) is True
    again = vm.exports[IDENTITY](obj)
    assert vm.exports[SAME_REF](obj, again) is True
    copy = vm.exports[IDENTITY]({"n": 1})
    assert vm.exports[SAME_REF](obj, copy) is False
    vm.exports[SET_PROP](obj, "n", 2)  # mutation through the guest is visible in the proxy
    assert obj.n == 2
    assert again.n == 2


def test_proxy_survives_guest_dropping_its_reference(vm):
    vm.exports[KEEP]({"kept": [1, 2, 3]})
    proxy = vm.exports[GET_KEPT]()
    vm.exports[KEEP](None)
    vm.run_gc(squeeze=True)
    for i in range(50):  # churn the heap
        vm.exports[IDENTITY]({"garbage": list(range(i % 10))})
    vm.run_gc(squeeze=True)
    assert proxy.to_python() == {"kept": [1, 2, 3]}
    assert vm.exports[SHOW](proxy) == "{kept:[1,2,3]}"


def test_proxy_from_another_vm_is_rejected(make_vm):
    a = make_vm("values", {2: host_two, 3: host_three})
    b = make_vm("values", {2: host_two, 3: host_three})
    obj = a.exports[IDENTITY]({"x": 1})
    with pytest.raises((TypeError, MicroviumError)):
        b.exports[IDENTITY](obj)
    assert b.exports[IDENTITY](obj.to_python()).to_python() == {"x": 1}


def test_uint8array_view(vm):
    view = vm.exports[MAKE_BYTES]()
    assert len(view) == 5
    assert bytes(view) == b"\x01\x02\x03\x04\x05"
    assert view.slice(1, 3) == b"\x02\x03"
    assert view.slice(0, 5) == b"\x01\x02\x03\x04\x05"
    view.set(b"\xaa\xbb", 3)
    assert bytes(view) == b"\x01\x02\x03\xaa\xbb"
    view.set(bytearray(b"\x10"), 0)
    view.set(memoryview(b"\x11"), 1)
    assert vm.exports[SHOW_BYTES](view) == "<16,17,3,170,187>"  # the guest sees the writes
    with pytest.raises((IndexError, ValueError)):
        view.set(b"\x00\x00", 4)  # would overflow the array
    assert bytes(view) == b"\x10\x11\x03\xaa\xbb"


def test_uint8array_round_trip(vm):
    data = bytes(range(256))
    view = vm.exports[IDENTITY](data)
    assert bytes(view) == data
    assert len(view) == 256
    assert vm.exports[BYTES_SUM](view) == sum(data)
    assert vm.exports[SAME_REF](view, view) is True


def test_to_python_deep_copy_with_bytes(vm):
    nested = vm.exports[MAKE_NESTED_WITH_BYTES]()
    copy = nested.to_python()
    assert copy == {"list": [1, {"deep": "x"}], "bytes": b"\x09\xff"}
    assert type(copy) is dict
    assert type(copy["list"]) is list
    assert type(copy["list"][1]) is dict
    assert type(copy["bytes"]) is bytes
    nested.list[1].deep = "changed"  # the copy is detached from the guest
    assert copy["list"][1]["deep"] == "x"


def test_closure_proxy_keeps_state(vm):
    f = vm.exports[MAKE_CLOSURE](100)
    assert callable(f)
    assert f(1) == 1101
    assert f(1) == 2101
    g = vm.exports[MAKE_CLOSURE](0)
    assert g(5) == 1005
    assert f(0) == 3100
    assert vm.exports[CALL_WITH](f, 0) == 4100  # a guest function goes back by reference
    assert vm.exports[TYPE_OF](f) == "function"


def test_methods_are_bound(vm):
    obj = vm.exports[MAKE_OBJECT_WITH_METHOD]()
    assert obj.scale(5) == 15
    scale = obj.scale
    obj.factor = 10
    assert scale(2) == 20  # still bound to obj
    assert obj["scale"](3) == 30


def test_class_proxy_constructs_instances(vm):
    Point = vm.exports[GET_POINT_CLASS]()
    assert vm.exports[TYPE_OF](Point) == "function"
    p = Point(3, -4)
    assert p.x == 3
    assert p.y == -4
    assert p.manhattan() == 7
    assert p.to_python() == {"x": 3, "y": -4}
    q = vm.exports[MAKE_POINT](1, 1)
    assert q.manhattan() == 2
    p.x = 10
    assert p.manhattan() == 14


def test_host_functions_keep_identity_on_the_way_out(vm):
    assert vm.exports[GET_HOST_TWO]() is host_two
    assert vm.exports[GET_HOST_THREE]() is host_three
    assert vm.exports[CALL_HOST_TWO]("x").to_python() == ["two", "x"]


def test_host_functions_from_the_import_map_go_back_in(vm):
    assert vm.exports[CALL_WITH](host_three, 14) == 42
    assert vm.exports[TYPE_OF](host_two) == "function"
    assert vm.exports[IDENTITY](host_two) is host_two
    assert vm.exports[SAME_REF](host_two, vm.exports[GET_HOST_TWO]()) is True


def test_host_function_return_values_are_mapped(vm):
    assert vm.exports[CALL_HOST_TWO](None).to_python() == ["two", None]
    assert vm.exports[CALL_HOST_TWO](null).to_python() == ["two", null]


def test_arguments_map_positionally(vm):
    assert vm.exports[RETURN_ARGS](1, "b", None).to_python() == [1, "b", None]
    assert vm.exports[RETURN_ARGS](1).to_python() == [1, None, None]
    assert vm.exports[RETURN_ARGS](1, 2, 3, 4).to_python() == [1, 2, 3]


# ---------------------------------------------------------------- property-based round trips

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

safe_ints = st.integers(min_value=-MAX_SAFE, max_value=MAX_SAFE)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [-0.0, 0.0, math.nan, math.inf, -math.inf, 0.1, 2.0**53, 2.0**53 + 2, -(2.0**60), 5e-324, 1.7976931348623157e308]
)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
keys = st.from_regex(r"[a-z_][a-zA-Z0-9_]{0,7}", fullmatch=True).filter(lambda k: k != "__proto__")
scalars = st.none() | st.just(null) | st.booleans() | safe_ints | floats | text
plain = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=12,
)
with_bytes = st.recursive(
    scalars | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=10,
)


def normalize(value):
    """The Python value a deep copy of ``value`` should come back as."""
    if isinstance(value, bool) or value is None or value is null or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return expected_number_out(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    return {k: normalize(v) for k, v in value.items()}


def assert_same(out, expected):
    """Deep equality that is exact about types, -0.0 and NaN."""
    if isinstance(expected, float):
        assert isinstance(out, float), (out, expected)
        assert same_float(out, expected), (out, expected)
    elif isinstance(expected, bool) or expected is None or expected is null:
        assert out is expected, (out, expected)
    elif isinstance(expected, list):
        assert type(out) is list, (out, expected)
        assert len(out) == len(expected)
        for a, b in zip(out, expected, strict=True):
            assert_same(a, b)
    elif isinstance(expected, dict):
        assert type(out) is dict, (out, expected)
        assert list(out) == list(expected), (out, expected)
        for k in expected:
            assert_same(out[k], expected[k])
    else:
        assert type(out) is type(expected), (out, expected)
        assert out == expected


@PROPERTY
@given(safe_ints)
def test_property_int_round_trip(value):
    with fresh_vm() as vm:
        out = vm.exports[IDENTITY](value)
        assert type(out) is int
        assert out == value


@PROPERTY
@given(floats)
def test_property_float_round_trip(value):
    with fresh_vm() as vm:
        assert_number(vm.exports[IDENTITY](value), expected_number_out(value))


@PROPERTY
@given(text)
def test_property_text_round_trip(value):
    with fresh_vm() as vm:
        out = vm.exports[IDENTITY](value)
        assert type(out) is str
        assert out == value
        assert vm.exports[SHOW](value) == "'" + value + "'"


@PROPERTY
@given(st.binary(max_size=300))
def test_property_bytes_round_trip(value):
    with fresh_vm() as vm:
        view = vm.exports[IDENTITY](value)
        assert bytes(view) == value
        assert len(view) == len(value)
        assert vm.exports[BYTES_SUM](value) == sum(value)


@PROPERTY
@given(plain)
def test_property_nested_round_trip(value):
    with fresh_vm() as vm:
        out = vm.exports[IDENTITY](value)
        if hasattr(out, "to_python"):
            out = out.to_python()
        assert_same(out, normalize(value))


@PROPERTY
@given(with_bytes)
def test_property_nested_with_bytes_round_trip(value):
    with fresh_vm() as vm:
        out = vm.exports[IDENTITY](value)
        if hasattr(out, "to_python"):
            out = out.to_python()
        elif hasattr(out, "__bytes__") and not isinstance(out, bytes):
            out = bytes(out)
        assert_same(out, normalize(value))


@PROPERTY
@given(st.dictionaries(keys, plain, max_size=6))
def test_property_object_keys_in_insertion_order(value):
    with fresh_vm() as vm:
        obj = vm.exports[IDENTITY](value)
        assert list(obj.keys()) == list(value)
        assert vm.exports[KEYS_OF](obj).to_python() == list(value)
        assert len(obj) == len(value)


@PROPERTY
@given(st.integers(min_value=MAX_SAFE + 1) | st.integers(max_value=-MAX_SAFE - 1))
def test_property_unsafe_ints_never_silently_round(value):
    with fresh_vm() as vm:
        with pytest.raises(OverflowError):
            vm.exports[IDENTITY](value)
        with pytest.raises(OverflowError):
            vm.exports[IDENTITY]([value])


@PROPERTY
@given(st.dictionaries(text.filter(lambda k: len(k) <= 12), safe_ints, max_size=4))
def test_property_arbitrary_keys_round_trip_or_raise(value):
    """Keys Microvium cannot represent (e.g. "0") must raise, never come back different."""
    with fresh_vm() as vm:
        try:
            out = vm.exports[IDENTITY](value).to_python()
        except (MicroviumError, TypeError, ValueError):
            return
        assert out == value
        assert list(out) == list(value)


@pytest.mark.parametrize("key", ["", "a b", "\u00e9\u2603", "-1", "1.5", "push", "constructor", "length"])
def test_unusual_object_keys_round_trip(vm, key):
    out = vm.exports[IDENTITY]({key: 7, "other": 8})
    assert out.to_python() == {key: 7, "other": 8}
    assert out[key] == 7
    assert vm.exports[GET_PROP](out, key) == 7


def test_cyclic_python_structure_is_rejected_cleanly(vm):
    cyclic: list = [1]
    cyclic.append(cyclic)
    with pytest.raises((ValueError, TypeError, RecursionError, MicroviumError)):
        vm.exports[IDENTITY](cyclic)
    looped: dict = {}
    looped["self"] = looped
    with pytest.raises((ValueError, TypeError, RecursionError, MicroviumError)):
        vm.exports[IDENTITY](looped)
    assert vm.exports[IDENTITY]([1, [2]]).to_python() == [1, [2]]


def test_cyclic_guest_structure_to_python_raises_instead_of_hanging(compile_js):
    data = compile_js("function cyc() { const o = { n: 1 }; o.self = o; return o; }\nvmExport(1, cyc);\n")
    with mvactors.VM.restore(data) as vm:
        obj = vm.exports[1]()
        assert obj.self.self.n == 1
        with pytest.raises((ValueError, RecursionError)):
            obj.to_python()


def test_proxy_of_a_closed_vm_cannot_be_used_or_passed(make_vm, snapshot):
    live = make_vm("values", {2: host_two, 3: host_three})
    with mvactors.VM.restore(snapshot("values"), imports={2: host_two, 3: host_three}) as dead:
        obj = dead.exports[IDENTITY]({"x": 1})
        fn = dead.exports[MAKE_CLOSURE](1)
    with pytest.raises(MicroviumError):
        obj.x  # noqa: B018
    with pytest.raises(MicroviumError):
        fn(1)
    with pytest.raises((TypeError, MicroviumError)):
        live.exports[IDENTITY](obj)
    assert live.exports[IDENTITY](5) == 5
