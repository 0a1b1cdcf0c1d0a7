// State that must survive create_snapshot() / VM.restore().
const print = vmImport(1);
let count = 0;
let log = [];
const settings = { name: "initial" };

function increment(by) {
  count = count + by;
  log.push(count);
  return count;
}
function getCount() {
  return count;
}
function getLog() {
  return log;
}
function rename(name) {
  settings.name = name;
  print("renamed to " + name);
}
function getSettings() {
  return settings;
}
function makeCounter() {
  let n = 0;
  return function () {
    n = n + 1;
    return n;
  };
}
let stored = null;
function storeClosure() {
  stored = makeCounter();
  return stored;
}
function callStored() {
  return stored();
}

vmExport(1, increment);
vmExport(2, getCount);
vmExport(3, getLog);
vmExport(4, rename);
vmExport(5, getSettings);
vmExport(6, storeClosure);
vmExport(7, callStored);
