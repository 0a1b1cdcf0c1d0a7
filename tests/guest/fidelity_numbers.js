// Float and integer arithmetic, and number-to-string formatting, the places
// where the wasm build's libc shims (fmod, pow, "%.15g") could differ from libm.

const log = vmImport(1);

function arith(a, b) {
  return [a + b, a - b, a * b, a / b, a % b, a ** b];
}

function formatted(a, b) {
  return "" + a + "|" + b + "|" + (a + b) + "|" + (a - b) + "|" + (a * b) + "|" + (a / b) + "|" + (a % b) + "|" + (a ** b);
}

function classic() {
  return "" + 0.1 + 0.2 + "," + (0.1 + 0.2) + "," + (1 / 3) + "," + (2 / 3) + "," + 1e21 + "," + 1.5e-7 + "," + 123456789.125;
}

function specials() {
  return "" + (-0) + "," + (1 / -0) + "," + (1 / 0) + "," + (0 / 0) + "," + (-5 % 5) + "," + (5 % -0) + "," + ((-8) ** (1 / 3)) + "," + (0 ** -1);
}

function overflow(x) {
  // int32 results that overflow must become floats, exactly as the compiler assumed.
  return [x + 1, x * 2, x - 1, -x, x * x];
}

function bits(a) {
  return "" + (a << 3) + "," + (a >> 1) + "," + (a >>> 0) + "," + (a | 0) + "," + (a & 255) + "," + (~a) + "," + (a ^ 0x5555);
}

let acc = 0.5;

function accumulate(x) {
  acc = acc * 1.5 + x;
  return acc;
}

function viaHost(a, b) {
  // Values round-trip through a host import; the host echoes its arguments.
  return log(a, b, a * b, "" + a / b);
}

vmExport(1, arith);
vmExport(2, formatted);
vmExport(3, classic);
vmExport(4, specials);
vmExport(5, overflow);
vmExport(6, bits);
vmExport(7, accumulate);
vmExport(8, viaHost);
