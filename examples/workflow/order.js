// An order workflow: charge the card, wait out a cooling-off timer, ship (retrying when
// the carrier fails). One actor per order; the host's steps are journaled, so a worker
// crash anywhere in the middle neither repeats a charge nor loses the order.
const charge = vmImport(1);   // journaled async: charge(order, cents) -> receipt
const ship = vmImport(2);     // journaled async: ship(order, attempt) -> tracking (may fail)
const log = vmImport(3);      // sync: log(text)
const sleep = vmImport(9);    // mvactors.imports.sleep

let order = null;

async function place(id, cents) {
  if (order !== null) {
    return order.status;      // placed already: a repeated request changes nothing
  }
  order = { id: id, status: "charging", attempts: 0 };
  order.receipt = await charge(id, cents);
  order.status = "cooling off";
  await sleep(300);
  let tracking = null;
  while (tracking === null) {
    order.attempts = order.attempts + 1;
    try {
      tracking = await ship(id, order.attempts);
    } catch (e) {
      log(id + ": shipping attempt " + order.attempts + " failed (" + e.message + "), retrying");
      await sleep(100 * order.attempts);
    }
  }
  order.tracking = tracking;
  order.status = "shipped";
  return order.status;
}

function status() {
  return order;
}

vmExport(1, place);
vmExport(2, status);
