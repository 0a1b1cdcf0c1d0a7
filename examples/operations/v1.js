// An account, version 1: deposits, a balance, and a loop heavy enough to run out of gas.
const audit = vmImport(1);     // a host call (its results are kept in history)

let balance = 0;
function deposit(amount) { audit("deposit " + amount); balance = balance + amount; return balance; }
function read() { return balance; }
function crunch(n) { let i = 0; while (i < n) { i = i + 1; } return n; }
function out() { return { balance: balance }; }     // migrate OUT: the state to carry over

vmExport(1, deposit);
vmExport(2, read);
vmExport(3, crunch);
vmExport(10, out);
