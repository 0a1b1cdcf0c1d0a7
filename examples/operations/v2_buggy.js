// A broken version 2: a deposit charges a fee. Replaying recorded history on it shows where it differs.
const audit = vmImport(1);

let balance = 0;
function deposit(amount) { audit("deposit " + amount); balance = balance + amount - 1; return balance; }
function read() { return balance; }
function crunch(n) { let i = 0; while (i < n) { i = i + 1; } return n; }
function into(v) { balance = v.balance; }

vmExport(1, deposit);
vmExport(2, read);
vmExport(3, crunch);
vmExport(11, into);
