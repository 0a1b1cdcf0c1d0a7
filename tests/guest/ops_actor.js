// The operations suite's guest (tests/cluster/test_operations.py): a counter with a log of what it
// applied, a throwing export, an async export whose promise rejects, a loop that runs out of gas,
// and the migrate exports of an upgrade.
const fetch = vmImport(3);     // plain async host call

let count = 0;
let seen = [];                 // what add() applied, in order

function add(tag) {
  count = count + 1;
  seen.push(tag);
  return count;
}
function state() {
  return { count: count, seen: seen, version: 1 };
}
function fail(message) {
  throw message;
}
async function reject(x) {     // rejects in the completion turn, after the host call answers
  await fetch(x);
  throw "rejected " + x;
}
function spin(n) {             // n loop iterations: a large n runs out of a per-turn gas budget
  let i = 0;
  while (i < n) { i = i + 1; }
  count = count + 1;
  return count;
}
function out() {               // migrate OUT: the state to carry to the next version
  return { count: count, seen: seen };
}

vmExport(1, add);
vmExport(2, state);
vmExport(5, fail);
vmExport(7, reject);
vmExport(8, spin);
vmExport(10, out);
