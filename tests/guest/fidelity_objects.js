// Objects, arrays and classes mutated across calls.

const registry = {};
const order = [];

function put(key, value) {
  if (registry[key] === undefined) {
    order.push(key);
  }
  registry[key] = value;
  return order.length;
}

function describe() {
  let s = "";
  for (let i = 0; i < order.length; i++) {
    const k = order[i];
    s = s + k + "=" + registry[k] + ";";
  }
  return s;
}

function point(x, y) {
  return { x: x, y: y, sum: x + y, tags: ["p", x > y, null, undefined], nested: { half: x / 2 } };
}

class Box {
  constructor(v) {
    this.v = v;
  }
  grow(by) {
    this.v = this.v + by;
    return this;
  }
}

let boxes = [];

function addBox(v) {
  const b = new Box(v);
  boxes.push(b);
  let total = 0;
  for (let i = 0; i < boxes.length; i++) {
    total = total + boxes[i].grow(1).v;
  }
  return total;
}

function matrix(n) {
  const rows = [];
  for (let i = 0; i < n; i++) {
    const r = [];
    for (let j = 0; j < n; j++) {
      r.push(i * j - n);
    }
    rows.push(r);
  }
  return rows;
}

function churn(n) {
  // Enough garbage to run the GC a few times; the result checks nothing moved wrongly.
  let keep = [];
  for (let i = 0; i < n; i++) {
    const o = { i: i, s: "item" + i };
    if (i % 7 === 0) keep.push(o);
  }
  let s = 0;
  for (let i = 0; i < keep.length; i++) {
    s = s + keep[i].i;
  }
  return s + "/" + keep.length + "/" + keep[keep.length - 1].s;
}

function churnArrays(n) {
  // The same garbage without objects: the GC then never merges property lists.
  let keep = [];
  for (let i = 0; i < n; i++) {
    const a = [i, "item" + i, i * 0.5];
    if (i % 7 === 0) keep.push(a);
  }
  let s = 0;
  for (let i = 0; i < keep.length; i++) {
    s = s + keep[i][0] + keep[i][2];
  }
  return s + "/" + keep.length + "/" + keep[keep.length - 1][1];
}

vmExport(1, put);
vmExport(2, describe);
vmExport(3, point);
vmExport(4, addBox);
vmExport(5, matrix);
vmExport(6, churn);
vmExport(7, churnArrays);
