// Exercises the Microvium language subset.  Every export is called by
// tests/test_language.py.  (Classes are only instantiated inside functions:
// `new` at top level crashes the 8.0.0 compiler's snapshotter.)

// ---- closures ----
function makeCounter(start) {
  let count = start;
  return {
    inc: function () { count = count + 1; return count; },
    get: function () { return count; },
  };
}
function makeAdder(n) {
  return (x) => x + n;
}
function closuresInLoop() {
  const fns = [];
  for (let i = 0; i < 3; i++) {
    fns.push(() => i * 10);
  }
  return [fns[0](), fns[1](), fns[2]()];
}
function sharedCapture() {
  let total = 0;
  const add = (x) => { total = total + x; };
  add(3);
  add(4);
  return total;
}

// ---- classes ----
class Animal {
  constructor(name, sound) {
    this.name = name;
    this.sound = sound;
  }
  speak() {
    return this.name + " says " + this.sound;
  }
  static kind() {
    return "animal";
  }
}
function classDemo() {
  const a = new Animal("Rex", "woof");
  return [a.speak(), Animal.kind(), typeof Animal, typeof a, a.name];
}
function getAnimalClass() {
  return Animal;
}

// ---- exceptions ----
function thrower(kind) {
  if (kind === 1) throw "a string";
  if (kind === 2) throw { code: 42 };
  if (kind === 3) throw 7;
  return "no throw";
}
function catcher(kind) {
  // Note: `try { return thrower(kind); } catch ...` does not catch in Microvium
  // 8.0.0 (the exception escapes; native engine and compile-time VM agree), so
  // the call's result goes through a variable.
  let result;
  try {
    result = thrower(kind);
  } catch (e) {
    if (typeof e === "object") return "object " + e.code;
    return "caught " + e;
  }
  return result;
}
function nestedTry() {
  let log = "";
  try {
    try {
      throw 1;
    } catch (e) {
      log += "inner" + e;
      throw 2;
    }
  } catch (e) {
    log += " outer" + e;
  }
  return log;
}
function rethrow() {
  try {
    thrower(2);
  } catch (e) {
    e.code = e.code + 1;
    throw e;
  }
}
function deepThrow(n) {
  if (n === 0) throw "bottom";
  return deepThrow(n - 1);
}

// ---- control flow ----
function loops(n) {
  let a = 0;
  for (let i = 0; i < n; i++) {
    if (i === 7) break;
    if (i !== 2) a += i;
  }
  let w = 0;
  while (w < n) w += 3;
  // (do..while compiles but crashes the 8.0.0 snapshot encoder, so it is not used)
  let d = 0;
  while (true) {
    d++;
    if (d > 4) break;
  }
  return [a, w, d];
}
function classify(x) {
  switch (x) {
    case 0:
      return "zero";
    case 1:
    case 2:
      return "small";
    case "x":
      return "letter";
    default:
      return "other";
  }
}
function switchFallthrough(x) {
  let log = "";
  switch (x) {
    case 1:
      log += "one ";
    case 2:
      log += "two ";
      break;
    case 3:
      log += "three ";
  }
  return log + "end";
}
function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}
function fact(n) {
  if (n <= 1) return 1;
  return n * fact(n - 1);
}
function logic(a, b) {
  return [a && b, a || b, !a, a ? "yes" : "no"];
}

// ---- numbers ----
function numToString(x) {
  return "" + x;
}
function pointOnePlusPointTwo() {
  return "" + (0.1 + 0.2);
}
function arith() {
  return [7 / 2, 6 / 3, -7 % 3, 2 ** 10, 1 / 0, -1 / 0, 5 & 3, 5 | 3, 5 ^ 3, ~5, 1 << 4, 7 >> 1, -1 >>> 28];
}
function overflow() {
  const big = 2147483647;
  const small = -2147483648;
  return [big + 1, small - 1, 65536 * 65536, -small, big * 2];
}
function toInt32(x) {
  return x | 0;
}
function add(a, b) {
  return a + b;
}
function mul(a, b) {
  return a * b;
}
function isNaNCheck(x) {
  return x !== x;
}
function increments() {
  let i = 0;
  i++;
  i += 5;
  i -= 1;
  i *= 3;
  i--;
  i %= 4;
  return i;
}

// ---- strings ----
function concat() {
  return "a" + 1 + true + null + undefined + 1.5;
}
function template(name, n) {
  return `${name} has ${n} items`;
}
function strEquals(a, b) {
  return a === b && ("a" + "b") === "ab";
}

// ---- typeof ----
function typeOf(x) {
  return typeof x;
}
function typeofGuestValues() {
  return [typeof undefined, typeof null, typeof true, typeof 1, typeof 1.5, typeof "s",
          typeof [], typeof {}, typeof makeAdder, typeof Animal, typeof Microvium.newUint8Array(1)];
}

// ---- arrays and objects ----
function arrays() {
  const a = [1, 2, 3];
  a.push(4);
  const lenAfterPush = a.length;
  a[6] = 7;
  const lenAfterSparse = a.length;
  const hole = a[5];
  a.length = 2;
  return [lenAfterPush, lenAfterSparse, hole, a.length, a[2], a];
}
function objects() {
  const o = { x: 1, y: 2 };
  o.z = 3;
  o["w"] = 4;
  const k = "x";
  o[k] = o[k] + 10;
  return [o.x, o.missing, Reflect.ownKeys(o), o];
}
function ownKeys(o) {
  return Reflect.ownKeys(o);
}
function sumArray(a) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}

// ---- Uint8Array ----
function makeBytes(n) {
  const u = Microvium.newUint8Array(n);
  for (let i = 0; i < n; i++) u[i] = (i * 7) & 255;
  return u;
}
function bytesInfo(u) {
  let s = 0;
  for (let i = 0; i < u.length; i++) s += u[i];
  return [u.length, s, u[u.length]];
}
function storeNonByte() {
  const u = Microvium.newUint8Array(2);
  u[0] = 300;
  return u;
}

// ---- async / await (guest-only) ----
async function double(x) {
  return x * 2;
}
async function chain(x) {
  const a = await double(x);
  const b = await double(a);
  return a + b;
}
async function awaitCaught() {
  try {
    await failing();
    return "not reached";
  } catch (e) {
    return "caught " + e;
  }
}
async function failing() {
  throw "async boom";
}
async function viaPromiseCtor(x) {
  const v = await new Promise((resolve) => resolve(x + 1));
  return v;
}
async function rejectsViaCtor(x) {
  return await new Promise((resolve, reject) => reject(x));
}

vmExport(1, makeCounter);
vmExport(2, makeAdder);
vmExport(3, closuresInLoop);
vmExport(4, sharedCapture);
vmExport(10, classDemo);
vmExport(11, getAnimalClass);
vmExport(20, thrower);
vmExport(21, catcher);
vmExport(22, nestedTry);
vmExport(23, rethrow);
vmExport(24, deepThrow);
vmExport(30, loops);
vmExport(31, classify);
vmExport(32, switchFallthrough);
vmExport(33, fib);
vmExport(34, fact);
vmExport(35, logic);
vmExport(40, numToString);
vmExport(41, pointOnePlusPointTwo);
vmExport(42, arith);
vmExport(43, overflow);
vmExport(44, add);
vmExport(45, mul);
vmExport(46, isNaNCheck);
vmExport(47, increments);
vmExport(48, toInt32);
vmExport(50, concat);
vmExport(51, template);
vmExport(52, strEquals);
vmExport(60, typeOf);
vmExport(61, typeofGuestValues);
vmExport(70, arrays);
vmExport(71, objects);
vmExport(72, ownKeys);
vmExport(73, sumArray);
vmExport(80, makeBytes);
vmExport(81, bytesInfo);
vmExport(82, storeNonByte);
vmExport(90, chain);
vmExport(91, awaitCaught);
vmExport(92, viaPromiseCtor);
vmExport(93, rejectsViaCtor);
vmExport(94, double);
