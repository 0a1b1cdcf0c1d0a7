"""The Microvium language subset, run through mvactors.

First what the language does (tests/guest/language.js), then what it lacks: each gap and each
workaround that docs/guest-language.md lists, checked against the pinned compiler so the page
stays honest.

Expected values were checked against the semantics of Microvium 8.0.0, which
differ from full JavaScript in places (number to string uses C's %.15g; int32
arithmetic overflows to float).
"""

from __future__ import annotations

import math

import anyio
import pytest

import mvactors
from mvactors import GuestError, MicroviumError, null

(MAKE_COUNTER, MAKE_ADDER, CLOSURES_IN_LOOP, SHARED_CAPTURE) = (1, 2, 3, 4)
(CLASS_DEMO, GET_ANIMAL_CLASS) = (10, 11)
(THROWER, CATCHER, NESTED_TRY, RETHROW, DEEP_THROW) = (20, 21, 22, 23, 24)
(LOOPS, CLASSIFY, SWITCH_FALLTHROUGH, FIB, FACT, LOGIC) = (30, 31, 32, 33, 34, 35)
(NUM_TO_STRING, POINT_ONE_PLUS_POINT_TWO, ARITH, OVERFLOW, ADD, MUL, IS_NAN, INCREMENTS, TO_INT32) = range(40, 49)
(CONCAT, TEMPLATE, STR_EQUALS) = (50, 51, 52)
(TYPE_OF, TYPEOF_GUEST_VALUES) = (60, 61)
(ARRAYS, OBJECTS, OWN_KEYS, SUM_ARRAY) = (70, 71, 72, 73)
(MAKE_BYTES, BYTES_INFO, STORE_NON_BYTE) = (80, 81, 82)
(CHAIN, AWAIT_CAUGHT, VIA_PROMISE_CTOR, REJECTS_VIA_CTOR, DOUBLE) = (90, 91, 92, 93, 94)


@pytest.fixture
def vm(make_vm):
    return make_vm("language")


# ---- closures ----


def test_closure_counter_keeps_private_state(vm):
    a = vm.exports[MAKE_COUNTER](5)
    b = vm.exports[MAKE_COUNTER](100)
    assert a.inc() == 6
    assert a.inc() == 7
    assert b.inc() == 101
    assert a.get() == 7
    assert b.get() == 101


def test_arrow_closure_captures_argument(vm):
    add3 = vm.exports[MAKE_ADDER](3)
    add10 = vm.exports[MAKE_ADDER](10)
    assert add3(4) == 7
    assert add10(4) == 14
    assert add3("x") == "x3"


def test_let_in_for_loop_is_per_iteration(vm):
    assert vm.exports[CLOSURES_IN_LOOP]().to_python() == [0, 10, 20]


def test_closures_share_captured_variables(vm):
    assert vm.exports[SHARED_CAPTURE]() == 7


# ---- classes ----


def test_class_constructor_methods_and_statics(vm):
    assert vm.exports[CLASS_DEMO]().to_python() == ["Rex says woof", "animal", "function", "object", "Rex"]


def test_class_constructed_from_python(vm):
    Animal = vm.exports[GET_ANIMAL_CLASS]()
    cat = Animal("Tom", "meow")
    assert cat.speak() == "Tom says meow"
    assert cat.name == "Tom"
    assert cat.to_python() == {"name": "Tom", "sound": "meow"}
    dog = Animal("Rex", "woof")
    assert dog.speak() == "Rex says woof"
    assert cat.speak() == "Tom says meow"


def test_class_static_method_from_python(vm):
    Animal = vm.exports[GET_ANIMAL_CLASS]()
    assert Animal.kind() == "animal"


def test_class_proxy_still_a_class_after_reading_a_static(vm):
    Animal = vm.exports[GET_ANIMAL_CLASS]()
    assert Animal.kind() == "animal"
    assert vm.exports[TYPE_OF](Animal) == "function"
    assert Animal("Tom", "meow").speak() == "Tom says meow"


# ---- exceptions ----


@pytest.mark.parametrize(
    ("kind", "expected"),
    [(1, "caught a string"), (2, "object 42"), (3, "caught 7"), (4, "no throw")],
)
def test_try_catch_in_guest(vm, kind, expected):
    assert vm.exports[CATCHER](kind) == expected


def test_nested_try_catch(vm):
    assert vm.exports[NESTED_TRY]() == "inner1 outer2"


@pytest.mark.parametrize(("kind", "value"), [(1, "a string"), (3, 7)])
def test_uncaught_throw_of_primitive(vm, kind, value):
    with pytest.raises(GuestError) as info:
        vm.exports[THROWER](kind)
    assert info.value.value == value


def test_uncaught_throw_of_object(vm):
    with pytest.raises(GuestError) as info:
        vm.exports[THROWER](2)
    assert info.value.value.to_python() == {"code": 42}
    assert isinstance(info.value, MicroviumError)


def test_rethrow_modified_exception(vm):
    with pytest.raises(GuestError) as info:
        vm.exports[RETHROW]()
    assert info.value.value.code == 43


def test_throw_unwinds_recursion(vm):
    with pytest.raises(GuestError) as info:
        vm.exports[DEEP_THROW](20)
    assert info.value.value == "bottom"
    assert vm.exports[FIB](10) == 55  # the VM is fine afterwards


# ---- control flow ----


def test_loops_break_and_while(vm):
    assert vm.exports[LOOPS](10).to_python() == [19, 12, 5]
    assert vm.exports[LOOPS](1).to_python() == [0, 3, 5]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, "zero"), (1, "small"), (2, "small"), ("x", "letter"), (3, "other"), ("0", "other"), (None, "other")],
)
def test_switch(vm, value, expected):
    assert vm.exports[CLASSIFY](value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, "one two end"), (2, "two end"), (3, "three end"), (4, "end")],
)
def test_switch_fallthrough(vm, value, expected):
    assert vm.exports[SWITCH_FALLTHROUGH](value) == expected


def test_recursion(vm):
    assert [vm.exports[FIB](n) for n in range(12)] == [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89]
    assert vm.exports[FIB](20) == 6765
    assert vm.exports[FACT](10) == 3628800
    assert vm.exports[FACT](18) == 6402373705728000  # beyond int32, still exact
    big = vm.exports[FACT](25)
    assert isinstance(big, float)
    assert big == pytest.approx(1.5511210043330986e25)


def test_logical_operators_and_ternary(vm):
    assert vm.exports[LOGIC](0, 5).to_python() == [0, 5, True, "no"]
    assert vm.exports[LOGIC](3, 5).to_python() == [5, 3, False, "yes"]
    assert vm.exports[LOGIC](null, "x").to_python() == [null, "x", True, "no"]


# ---- numbers ----


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.5, "1.5"),
        (0.1, "0.1"),
        (1 / 3, "0.333333333333333"),
        (2 / 3, "0.666666666666667"),
        (1e21, "1e+21"),
        (1e-7, "1e-07"),
        (123456789012, "123456789012"),
        (2**31, "2147483648"),
        (-5, "-5"),
        (0, "0"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        (math.nan, "NaN"),
        (True, "true"),
        (None, "undefined"),
        (null, "null"),
    ],
)
def test_number_formatting_uses_percent_15g(vm, value, text):
    assert vm.exports[NUM_TO_STRING](value) == text


def test_point_one_plus_point_two_prints_as_point_three(vm):
    assert vm.exports[POINT_ONE_PLUS_POINT_TWO]() == "0.3"
    assert vm.exports[ADD](0.1, 0.2) == 0.1 + 0.2  # the value itself is the exact double


def test_arithmetic_and_bitwise_operators(vm):
    out = vm.exports[ARITH]().to_python()
    assert out == [3.5, 2, -1, 1024, math.inf, -math.inf, 1, 7, 6, -6, 16, 3, 15]
    assert type(out[0]) is float
    assert type(out[1]) is int


def test_int32_overflow_becomes_float(vm):
    assert vm.exports[OVERFLOW]().to_python() == [2147483648, -2147483649, 4294967296, 2147483648, 4294967294]
    assert vm.exports[ADD](2**31 - 1, 1) == 2**31
    product = vm.exports[MUL](2**31 - 1, 2**31 - 1)  # beyond 2**53: the correctly rounded double
    assert type(product) is float
    assert product == float((2**31 - 1) ** 2)
    assert vm.exports[MUL](1 << 20, 1 << 20) == 1 << 40
    assert vm.exports[ADD](-(2**31), -1) == -(2**31) - 1


@pytest.mark.parametrize(("value", "expected"), [(5, 5), (-5, -5), (2**31 - 1, 2**31 - 1), (3.7, 3), (-3.7, -3)])
def test_bitwise_or_zero_truncates_to_int32(vm, value, expected):
    assert vm.exports[TO_INT32](value) == expected


def test_bitwise_or_zero_of_2_pow_31_wraps_like_javascript(vm):
    assert vm.exports[TO_INT32](2**31) == -(2**31)


def test_float_arithmetic(vm):
    assert vm.exports[ADD](0.5, 0.25) == 0.75
    assert math.isnan(vm.exports[ADD](math.inf, -math.inf))
    assert vm.exports[IS_NAN](math.nan) is True
    assert vm.exports[IS_NAN](1) is False
    assert vm.exports[MUL](1e300, 1e300) == math.inf


def test_compound_assignment_and_increment(vm):
    assert vm.exports[INCREMENTS]() == 2


# ---- strings ----


def test_string_concatenation_of_mixed_types(vm):
    assert vm.exports[CONCAT]() == "a1truenullundefined1.5"
    assert vm.exports[ADD]("x", 1) == "x1"
    assert vm.exports[ADD](1, "x") == "1x"
    assert vm.exports[ADD]("\u00e9", "\u2603") == "\u00e9\u2603"


def test_template_literal(vm):
    assert vm.exports[TEMPLATE]("bob", 3) == "bob has 3 items"


def test_string_equality(vm):
    assert vm.exports[STR_EQUALS]("x", "x") is True
    assert vm.exports[STR_EQUALS]("x", "y") is False


# ---- typeof ----


def test_typeof_guest_values(vm):
    assert vm.exports[TYPEOF_GUEST_VALUES]().to_python() == [
        "undefined",
        "object",
        "boolean",
        "number",
        "number",
        "string",
        "object",
        "object",
        "function",
        "function",
        "object",
    ]


def test_typeof_guest_function_and_class_proxies(vm):
    assert vm.exports[TYPE_OF](vm.exports[MAKE_ADDER]) == "function"
    assert vm.exports[TYPE_OF](vm.exports[GET_ANIMAL_CLASS]()) == "function"


# ---- arrays and objects ----


def test_arrays_push_length_holes_and_truncation(vm):
    out = vm.exports[ARRAYS]()
    assert out[0] == 4
    assert out[1] == 7
    assert out[2] is None
    assert out[3] == 2
    assert out[4] is None
    assert out[5].to_python() == [1, 2]


def test_objects_dynamic_properties_and_own_keys(vm):
    out = vm.exports[OBJECTS]()
    assert out[0] == 11
    assert out[1] is None
    assert out[2].to_python() == ["x", "y", "z", "w"]
    assert out[3].to_python() == {"x": 11, "y": 2, "z": 3, "w": 4}


def test_reflect_own_keys(vm):
    assert vm.exports[OWN_KEYS]({"b": 1, "a": 2, "c": 3}).to_python() == ["b", "a", "c"]
    assert vm.exports[OWN_KEYS]({}).to_python() == []


def test_sum_array_from_python(vm):
    assert vm.exports[SUM_ARRAY]([1, 2, 3.5]) == 6.5
    assert vm.exports[SUM_ARRAY](list(range(100))) == 4950


# ---- Uint8Array ----


def test_uint8array_created_in_guest(vm):
    view = vm.exports[MAKE_BYTES](5)
    assert bytes(view) == bytes([0, 7, 14, 21, 28])
    assert vm.exports[BYTES_INFO](view).to_python() == [5, 70, None]
    big = vm.exports[MAKE_BYTES](100)
    assert bytes(big) == bytes((i * 7) & 255 for i in range(100))


def test_uint8array_rejects_non_byte_values(vm):
    with pytest.raises(MicroviumError):
        vm.exports[STORE_NON_BYTE]()


# ---- async / await inside the guest ----


# (Awaitables are held in a variable before awaiting; awaiting a call's result
# directly is covered by test_async.py::test_await_call_result_directly.)


@pytest.mark.anyio
async def test_guest_async_chain(vm):
    async with vm:
        with anyio.fail_after(5):
            pending = vm.exports[CHAIN](3)
            assert await pending == 18
            pending = vm.exports[DOUBLE](21)
            assert await pending == 42


@pytest.mark.anyio
async def test_guest_await_rejected_promise_is_caught(vm):
    async with vm:
        with anyio.fail_after(5):
            pending = vm.exports[AWAIT_CAUGHT]()
            assert await pending == "caught async boom"


@pytest.mark.anyio
async def test_guest_promise_constructor(vm):
    async with vm:
        with anyio.fail_after(5):
            pending = vm.exports[VIA_PROMISE_CTOR](41)
            assert await pending == 42
            pending = vm.exports[REJECTS_VIA_CTOR]("no")
            with pytest.raises(GuestError) as info:
                await pending
            assert info.value.value == "no"


# ---- docs/guest-language.md: the documented gaps and their workarounds ----


MISSING_SYNTAX = {
    "continue": "for (let i = 0; i < 2; i++) { continue; }",
    # The compiler only compiles what the exports reach, and top-level code runs in Node.js.
    "do..while": "const f = () => { let i = 0; do { i++; } while (i < 3); return i; }; vmExport(2, f);",
    "finally": "try { } catch (e) { } finally { }",
    "labelled break": "outer: for (;;) { break outer; }",
    "for..of": "for (const x of [1]) { }",
    "for..in": "for (const k in {a: 1}) { }",
    "destructuring": "const {a} = {a: 1};",
    "default parameter": "const f = (x = 1) => x;",
    "spread": "const a = [...[1]];",
    "object method": "const o = { f() { return 1; } };",
    "computed key": "const k = 'a'; const o = {[k]: 1};",
    "optional chaining": "const o = {}; const v = o?.a;",
    "nullish": "const v = undefined ?? 1;",
    "delete": "const o = {a: 1}; delete o.a;",
    "instanceof": "class A {} const v = {} instanceof A;",
    "loose equality": "const v = 1 == 1;",
    "extends": "class A {} class B extends A {}",
    "generator": "function* g() { yield 1; }",
    "regexp": "const r = /a/;",
    "top-level class instance": "class A { constructor() { this.n = 1; } } const a = new A(); vmExport(2, () => a.n);",
}


@pytest.mark.parametrize("construct", MISSING_SYNTAX)
def test_documented_gaps_do_not_compile(construct):
    with pytest.raises(mvactors.CompileError):
        mvactors.compile(MISSING_SYNTAX[construct] + "\nvmExport(1, () => 1);\n")


WORKAROUNDS = [
    ("truncate without Math", "vmExport(1, (x) => x | 0);", (3.7,), 3),
    ("keys without Object", "vmExport(1, (o) => Reflect.ownKeys(o));", ({"a": 1, "b": 2},), ["a", "b"]),
    ("to string without String", "vmExport(1, (x) => '' + x);", (5,), "5"),
    ("to number without Number", "vmExport(1, (s) => +s);", ("12",), 12),
    ("NaN test without isNaN", "vmExport(1, (x) => x !== x);", (float("nan"),), True),
    ("continue as if", "vmExport(1, () => { let s = 0; for (let i = 0; i < 4; i++) { if (i !== 1) { s += i; } } "
     "return s; });", (), 5),
    ("do..while as while(true)", "vmExport(1, () => { let i = 0; while (true) { i++; if (!(i < 3)) break; } "
     "return i; });", (), 3),
    ("for..of as index loop", "vmExport(1, (a) => { let s = 0; for (let i = 0; i < a.length; i++) s += a[i]; "
     "return s; });", ([1, 2, 3],), 6),
    ("method as function property", "const o = { v: 2, f: function () { return this.v; } }; "
     "vmExport(1, () => o.f());", (), 2),
    ("computed key by assignment", "vmExport(1, (k) => { const o = {}; o[k] = 1; return o; });", ("zz",), {"zz": 1}),
    ("class instance made at run time", "class A { constructor() { this.n = 5; } } let a; "
     "vmExport(1, () => { if (a === undefined) a = new A(); return a.n; });", (), 5),
    ("JSON at compile time", "const cfg = JSON.parse('{\"a\": 3}'); vmExport(1, () => cfg.a);", (), 3),
    ("Uint8Array via Microvium", "vmExport(1, () => { const b = Microvium.newUint8Array(2); b[0] = 7; "
     "return b[0] + b.length; });", (), 9),
]


@pytest.mark.parametrize(("what", "source", "args", "expected"), WORKAROUNDS, ids=[w[0] for w in WORKAROUNDS])
def test_documented_workarounds_work(compile_js, what, source, args, expected):
    with mvactors.VM.restore(compile_js(source + "\n")) as vm:
        result = vm.exports[1](*args)
        assert (result.to_python() if hasattr(result, "to_python") else result) == expected


@pytest.mark.parametrize(
    "source",
    [
        "vmExport(1, (s) => s.length);",
        "vmExport(1, (a) => a.map((x) => x));",
        "vmExport(1, () => JSON.stringify({}));",
    ],
)
def test_documented_run_time_gaps_raise(compile_js, source):
    with mvactors.VM.restore(compile_js(source + "\n")) as vm, pytest.raises(mvactors.MicroviumError):
        vm.exports[1]("abc" if "s.length" in source else [1])


def test_string_ordering_is_documented_as_false(compile_js):
    with mvactors.VM.restore(compile_js("vmExport(1, () => 'a' < 'b');\n")) as vm:
        assert vm.exports[1]() is False
