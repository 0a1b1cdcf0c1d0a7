// Value mapping between Python and the guest, in both directions.
const hostTwo = vmImport(2);
const hostThree = vmImport(3);

function identity(x) {
  return x;
}
function typeOf(x) {
  return typeof x;
}
function isNull(x) {
  return x === null;
}
function isUndefined(x) {
  return x === undefined;
}
function isNegZero(x) {
  // (In Microvium -0 === 0 is false, so only the division test is used.)
  return typeof x === "number" && 1 / x === -Infinity;
}
function isNaNValue(x) {
  return x !== x;
}
function keysOf(o) {
  return Reflect.ownKeys(o);
}
function lengthOf(a) {
  return a.length;
}
function itemAt(a, i) {
  return a[i];
}
function getProp(o, k) {
  return o[k];
}
function setProp(o, k, v) {
  o[k] = v;
  return o;
}
function sameRef(a, b) {
  return a === b;
}
function bytesSum(u) {
  let s = 0;
  for (let i = 0; i < u.length; i++) s += u[i];
  return s;
}
// A deterministic string rendering of a guest value, used to check what the
// guest actually received (independently of the way back out).
function show(x) {
  if (x === null) return "null";
  if (x === undefined) return "undefined";
  const t = typeof x;
  if (t === "number") {
    if (x !== x) return "NaN";
    if (1 / x === -Infinity) return "-0";
    return "" + x;
  }
  if (t === "string") return "'" + x + "'";
  if (t === "boolean") return x ? "true" : "false";
  if (t === "function") return "function";
  if (typeof x.length === "number") {
    let s = "[";
    for (let i = 0; i < x.length; i++) {
      if (i > 0) s += ",";
      s += show(x[i]);
    }
    return s + "]";
  }
  const keys = Reflect.ownKeys(x);
  let s = "{";
  for (let i = 0; i < keys.length; i++) {
    if (i > 0) s += ",";
    s += keys[i] + ":" + show(x[keys[i]]);
  }
  return s + "}";
}
function showBytes(u) {
  let s = "<";
  for (let i = 0; i < u.length; i++) {
    if (i > 0) s += ",";
    s += u[i];
  }
  return s + ">";
}

function makeValues() {
  return {
    undef: undefined,
    nul: null,
    yes: true,
    no: false,
    zero: 0,
    negZero: -0,
    nan: NaN,
    inf: Infinity,
    ninf: -Infinity,
    int: 42,
    neg: -7,
    beyondInt32: 2147483647 + 1,
    float: 1.5,
    str: "h\u00e9llo \u2603",
    empty: "",
    arr: [1, "two", [3]],
    obj: { a: 1, b: { c: null } },
  };
}
function makeNumber(kind) {
  if (kind === "negZero") return -0;
  if (kind === "nan") return NaN;
  if (kind === "inf") return Infinity;
  if (kind === "ninf") return -Infinity;
  if (kind === "maxSafe") return 9007199254740992;
  if (kind === "beyondSafe") return 9007199254740992 * 4;
  if (kind === "half") return 0.5;
  if (kind === "twoPointZero") return 4 / 2;
  return undefined;
}
function makeBytes() {
  const u = Microvium.newUint8Array(5);
  for (let i = 0; i < 5; i++) u[i] = i + 1;
  return u;
}
function makeNestedWithBytes() {
  const u = Microvium.newUint8Array(2);
  u[0] = 9;
  u[1] = 255;
  return { list: [1, { deep: "x" }], bytes: u };
}
function makeClosure(base) {
  let calls = 0;
  return function (x) {
    calls = calls + 1;
    return base + x + calls * 1000;
  };
}
function makeObjectWithMethod() {
  return {
    factor: 3,
    scale: function (x) { return this.factor * x; },
  };
}
class Point {
  constructor(x, y) {
    this.x = x;
    this.y = y;
  }
  manhattan() {
    const ax = this.x < 0 ? -this.x : this.x;
    const ay = this.y < 0 ? -this.y : this.y;
    return ax + ay;
  }
}
function getPointClass() {
  return Point;
}
function makePoint(x, y) {
  return new Point(x, y);
}
function getHostTwo() {
  return hostTwo;
}
function getHostThree() {
  return hostThree;
}
function callHostTwo(x) {
  return hostTwo(x);
}
function callWith(f, x) {
  return f(x);
}
function returnArgCount(a, b, c) {
  return [a, b, c];
}
function makeArray(n) {
  const a = [];
  for (let i = 0; i < n; i++) a.push(i * i);
  return a;
}
let kept = null;
function keep(x) {
  kept = x;
}
function getKept() {
  return kept;
}

vmExport(1, identity);
vmExport(2, typeOf);
vmExport(3, isNull);
vmExport(4, isUndefined);
vmExport(5, isNegZero);
vmExport(6, isNaNValue);
vmExport(7, keysOf);
vmExport(8, lengthOf);
vmExport(9, itemAt);
vmExport(10, getProp);
vmExport(11, setProp);
vmExport(12, sameRef);
vmExport(13, bytesSum);
vmExport(14, show);
vmExport(15, showBytes);
vmExport(20, makeValues);
vmExport(21, makeNumber);
vmExport(22, makeBytes);
vmExport(23, makeNestedWithBytes);
vmExport(24, makeClosure);
vmExport(25, makeObjectWithMethod);
vmExport(26, getPointClass);
vmExport(27, makePoint);
vmExport(28, makeArray);
vmExport(30, getHostTwo);
vmExport(31, getHostThree);
vmExport(32, callHostTwo);
vmExport(33, callWith);
vmExport(34, returnArgCount);
vmExport(40, keep);
vmExport(41, getKept);
