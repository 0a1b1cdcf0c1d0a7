// Host imports called by the guest: argument mapping, proxies handed to the
// host, and host code calling back into the VM.
const host = vmImport(1);
let counter = 0;
const registry = { entries: [] };

function bump() {
  counter = counter + 1;
  return counter;
}
function callHost(x) {
  return host(x);
}
function callHostWithMany() {
  return host(1, "two", null, undefined, [3], 2.5, true);
}
function callHostWithNothing() {
  return host();
}
function passObject() {
  return host({ a: 1, nested: [1, 2], fn: (y) => y * 2 });
}
function passRegistry() {
  return host(registry);
}
function registrySize() {
  return registry.entries.length;
}
function hostResultPlusOne(x) {
  return host(x) + 1;
}
function sameAsRegistry(x) {
  return x === registry;
}
function describeHostResult(x) {
  const r = host(x);
  if (r === undefined) return "undefined";
  if (r === null) return "null";
  return typeof r;
}

vmExport(1, bump);
vmExport(2, callHost);
vmExport(3, callHostWithMany);
vmExport(4, callHostWithNothing);
vmExport(5, passObject);
vmExport(6, passRegistry);
vmExport(7, registrySize);
vmExport(8, hostResultPlusOne);
vmExport(9, sameAsRegistry);
vmExport(10, describeHostResult);

// Allocates around a host call, so a GC run by the host mid-call must keep
// the guest's live locals and arguments.
function allocateAroundHost(arg) {
  const local = { a: [1, 2, 3], s: "x" + arg.name };
  host(local);
  const junk = [];
  for (let i = 0; i < 50; i++) junk.push({ i: i });
  return [local.a[2], local.s, arg.name, arg.list[1], junk.length];
}
vmExport(11, allocateAroundHost);
