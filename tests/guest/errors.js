// Error paths: guest throws, host errors, gas and heap exhaustion.
const host = vmImport(1);

function throwValue(v) {
  throw v;
}
function throwObject(msg) {
  throw { name: "GuestFailure", message: msg };
}
function callHost(x) {
  return host(x) + 1;
}
function catchHost(x) {
  // A host error is not a guest exception: the guest cannot catch it.
  try {
    return host(x);
  } catch (e) {
    return "guest caught it";
  }
}
function spin(n) {
  let i = 0;
  while (i < n) i++;
  return i;
}
function forever() {
  while (true) {}
}
let hog = null;
function exhaustHeap() {
  // A linked list that keeps growing until the heap limit (MVM_MAX_HEAP_SIZE) is hit.
  while (true) {
    hog = { next: hog, a: 1, b: 2, c: 3 };
  }
}
function recurse(n) {
  return recurse(n + 1) + 1;
}

vmExport(1, throwValue);
vmExport(2, throwObject);
vmExport(3, callHost);
vmExport(4, catchHost);
vmExport(5, spin);
vmExport(6, forever);
vmExport(7, exhaustHeap);
vmExport(8, recurse);
