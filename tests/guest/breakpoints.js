// A tiny function whose bytecode addresses the breakpoint tests look up in the disassembly.
function add(a, b) {
  return a + b;
}
function twice(a) {
  return add(a, a) + add(a, 1);
}
vmExport(1, add);
vmExport(2, twice);
