// A guest script: it imports `print` from the host and exports `sayHello`.
const print = vmImport(1);

let greeted = 0;

function sayHello(name) {
  greeted++;
  print("Hello, " + name + "! (greeting #" + greeted + ")");
  return greeted;
}

vmExport(1, sayHello);
