// Calls an async host import but contains no `await`, so the snapshot has no
// promise machinery: the engine raises a fatal error when the import is called.
const asyncHost = vmImport(5);
const syncHost = vmImport(1);

function callAsyncHost(x) {
  return asyncHost(x);
}
function callSyncHost(x) {
  return syncHost(x);
}
vmExport(1, callAsyncHost);
vmExport(2, callSyncHost);
