"""docs/guest-language.md, checked against the pinned compiler: each gap and each workaround."""

from __future__ import annotations

import pytest

import mvactors

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
