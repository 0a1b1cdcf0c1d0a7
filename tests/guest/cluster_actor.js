// The cluster suites' guest (tests/cluster/): counters that check per-sender order,
// a workflow step with journaled async calls and a timer.
const effect = vmImport(1);    // sync host effect (logged by the host)
const charge = vmImport(2);    // journaled async host call
const fetch = vmImport(3);     // plain async host call (re-issued after a takeover)
const sleep = vmImport(9);     // mvactors.imports.sleep

let count = 0;
let last = {};                 // sender -> last sequence number applied
let problems = [];             // duplicates, gaps, reorderings seen
let done = [];

function add(sender, seq) {
  const prev = last[sender];
  const expected = prev === undefined ? 1 : prev + 1;
  if (seq !== expected) {
    problems.push(sender + ": got " + seq + " after " + prev);
  }
  last[sender] = seq;
  count = count + 1;
  return count;
}
function state() {
  return { count: count, problems: problems, last: last, done: done };
}
async function order(id, ms) {
  const receipt = await charge(id);
  effect("charged " + id + " " + receipt);
  if (ms > 0) {
    await sleep(ms);
  }
  done.push(id);
  return receipt;
}
async function remote(x) {
  const got = await fetch(x);
  done.push(got);
  return got;
}
function fail(message) {
  throw message;
}
async function stuck(x) {   // its completion turn never ends: the hard stop kills the VM
  await fetch(x);
  effect("looping " + x);
  while (true) {}
}

vmExport(1, add);
vmExport(2, state);
vmExport(3, order);
vmExport(4, remote);
vmExport(5, fail);
vmExport(6, stuck);
