// Closures and state that persists across calls (and across snapshots).
// Used by tests/test_native_fidelity.py: wasm and native must agree call by call.

function makeCounter(start) {
  let n = start;
  return (step) => {
    n = n + step;
    return n;
  };
}

// Created at compile time, so the closure and its captured `n` are in the snapshot.
const counter = makeCounter(10);
let calls = 0;
let history = [];

function bump(step) {
  calls = calls + 1;
  const value = counter(step);
  history.push(value);
  return value;
}

function makeAdder(k) {
  return (x) => x + k;
}

function adders(k, x) {
  const add = makeAdder(k);
  const twice = (f, v) => f(f(v));
  return twice(add, x);
}

function loopCaptures(n) {
  const fns = [];
  for (let i = 0; i < n; i++) {
    fns.push(() => i * i + calls);
  }
  let s = 0;
  for (let j = 0; j < fns.length; j++) {
    s = s + fns[j]();
  }
  return s;
}

function summary() {
  let s = "calls=" + calls + " history=";
  for (let i = 0; i < history.length; i++) {
    s = s + history[i] + ",";
  }
  return s;
}

vmExport(1, bump);
vmExport(2, adders);
vmExport(3, loopCaptures);
vmExport(4, summary);
