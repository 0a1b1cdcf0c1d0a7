// Host async imports and guest async functions.
const echoLater = vmImport(10);
const failLater = vmImport(11);
const notify = vmImport(12);
const syncHost = vmImport(1);

async function echoVia(x) {
  const r = await echoLater(x);
  return r;
}
async function sumVia(a, b) {
  const x = await echoLater(a);
  const y = await echoLater(b);
  return x + y;
}
async function catchFailure(msg) {
  try {
    await failLater(msg);
    return "no error";
  } catch (e) {
    return e.name + ": " + e.message;
  }
}
async function uncaughtFailure(msg) {
  await failLater(msg);
  return "not reached";
}
async function guestThrowsAfterAwait(v) {
  await echoLater(1);
  throw v;
}
async function guestThrowsImmediately(v) {
  throw v;
}
async function noAwaitInside(x) {
  return x * 2;
}
function fireAndForget(x) {
  // Starts host async work without awaiting it.
  notify(x);
  return "started";
}
async function mixed(x) {
  const a = syncHost(x);
  const b = await echoLater(a);
  return [a, b];
}
async function objectThroughAwait() {
  const o = await echoLater({ k: [1, 2] });
  return o.k[1];
}

vmExport(1, echoVia);
vmExport(2, sumVia);
vmExport(3, catchFailure);
vmExport(4, uncaughtFailure);
vmExport(5, guestThrowsAfterAwait);
vmExport(6, guestThrowsImmediately);
vmExport(7, noAwaitInside);
vmExport(8, fireAndForget);
vmExport(9, mixed);
vmExport(10, objectThroughAwait);
