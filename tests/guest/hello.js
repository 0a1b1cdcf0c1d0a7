// The canonical example: an imported print function and an exported entry point.
const print = vmImport(1);

function sayHello(name) {
  print("Hello, " + name + "!");
  return "greeted " + name;
}

vmExport(1, sayHello);
