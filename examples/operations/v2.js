// An account, version 2: the same behaviour, plus a count of deposits; IN takes version 1's state.
const audit = vmImport(1);

let balance = 0;
let deposits = 0;
function deposit(amount) { audit("deposit " + amount); balance = balance + amount; deposits = deposits + 1; return balance; }
function read() { return balance; }
function crunch(n) { let i = 0; while (i < n) { i = i + 1; } return n; }
function count() { return deposits; }
function into(v) { balance = v.balance; }          // migrate IN

vmExport(1, deposit);
vmExport(2, read);
vmExport(3, crunch);
vmExport(4, count);
vmExport(11, into);
