// General-purpose actor for the runtime tests (tests/test_runtime*.py).
const trace = vmImport(1);     // sync: trace(kind, a, b) -> records in Python
const fetch = vmImport(2);     // async host call, gated by the test
const post = vmImport(3);      // async: post(target, value) -> sends to another actor
const sleep = vmImport(9);     // mvactors.imports.sleep

let count = 0;
let history = [];
let hoard = null;

// Ordering: enter/exit around a counter bump and some busy work.
function handle(sender, seq) {
  trace("enter", sender, seq);
  count = count + 1;
  let x = 0;
  for (let i = 0; i < 10; i++) {
    x = x + i;
  }
  trace("exit", sender, seq);
  return count;
}
function getCount() {
  return count;
}
function increment(by) {
  count = count + by;
  return count;
}
// Gas: effects before and after a loop of `n` iterations; `history` shows partial turns.
function spin(n) {
  history.push(n);
  trace("spin", n, count);
  let s = 0;
  for (let i = 0; i < n; i++) {
    s = s + i;
  }
  count = count + s;
  trace("spun", n, count);
  return count;
}
function getState() {
  return [count, history];
}
// Async host calls.
async function fetchAdd(key) {
  const v = await fetch(key);
  count = count + v;
  history.push(key);
  return count;
}
async function fetchThenSpin(key, n) {
  const v = await fetch(key);
  history.push(v);
  let s = 0;
  for (let i = 0; i < n; i++) {
    s = s + i;
  }
  count = count + s;
  return count;
}
// Timers.
async function nap(ms, tag) {
  trace("nap", tag, ms);
  await sleep(ms);
  count = count + 1;
  history.push(tag);
  trace("woke", tag, count);
  return tag;
}
// Simulation: `rounds` times sleep a few ms then post to the next actor.
async function ticker(self, next, rounds, step) {
  for (let i = 0; i < rounds; i++) {
    await sleep(step * (i + 1));
    count = count + 1;
    trace("tick", self, i);
    await post(next, self * 1000 + i);
  }
  return count;
}
// The same with a synchronous post (Microvium cannot await a non-promise).
async function tickerSync(self, next, rounds, step) {
  for (let i = 0; i < rounds; i++) {
    await sleep(step * (i + 1));
    count = count + 1;
    trace("tick", self, i);
    post(next, self * 1000 + i);
  }
  return count;
}
function receive(value) {
  history.push(value);
  trace("recv", value, history.length);
  return history.length;
}
// Errors.
function fail(message) {
  throw message;
}
async function failLater(message) {
  await fetch(message);
  throw message;
}
function allocate(n) {
  // Grows a chain held by a global until the ~29 KB heap is exhausted for large n.
  for (let i = 0; i < n; i++) {
    hoard = [hoard, i, i, i, i, i, i, i];
  }
  return n;
}
function echo(x) {
  return x;
}
async function fetchThenAllocate(key, n) {
  await fetch(key);
  return allocate(n);
}

vmExport(1, handle);
vmExport(2, getCount);
vmExport(3, increment);
vmExport(4, spin);
vmExport(5, getState);
vmExport(6, fetchAdd);
vmExport(7, fetchThenSpin);
vmExport(8, nap);
vmExport(9, ticker);
vmExport(10, receive);
vmExport(11, fail);
vmExport(12, failLater);
vmExport(13, allocate);
vmExport(14, echo);
vmExport(15, fetchThenAllocate);
vmExport(16, tickerSync);
