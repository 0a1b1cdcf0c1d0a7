// State for savepoint/rollback tests: a list of records and a running total.
let items = [];
let total = 0;

function add(n) {
  let i = 0;
  while (i < n) {
    items.push({ v: i });
    total += i;
    i++;
  }
  return total;
}

vmExport(1, add);
vmExport(2, () => total);
vmExport(3, () => items.length);
vmExport(4, () => items);
vmExport(5, (i) => items[i]);
