// Thermostat firmware for a Microvium device.
//
// The host provides the hardware: a temperature sensor that answers
// asynchronously (like an I2C read), a relay output, and a timer. The same
// snapshot could run on a microcontroller with a C host providing these.

const readTemperature = vmImport(2); // async () => degrees Celsius
const setOutput = vmImport(3);       // (mode) => undefined; 0 off, 1 heat, 2 cool
const sleep = vmImport(9);           // async (ms) => undefined

const IDLE = 0;
const HEATING = 1;
const COOLING = 2;
const STATE_NAMES = ["IDLE", "HEATING", "COOLING"];

let setpoint = 21;
let hysteresis = 0.5;
let state = IDLE;
let lastTemperature = 0;
let transitions = 0;
let samples = 0;
let sensorErrors = 0;
let running = false;
// Milliseconds spent in each state, attributed per sampling period.
const stateMs = [0, 0, 0];

function enter(next) {
  if (next !== state) {
    state = next;
    transitions++;
    setOutput(next);
  }
}

// Switch on outside the band, switch off once the setpoint is reached: the
// gap between the two thresholds keeps the relay from chattering.
function step(t) {
  lastTemperature = t;
  if (state === IDLE) {
    if (t < setpoint - hysteresis) enter(HEATING);
    else if (t > setpoint + hysteresis) enter(COOLING);
  } else if (state === HEATING) {
    if (t >= setpoint) enter(IDLE);
  } else if (t <= setpoint) {
    enter(IDLE);
  }
}

// The main loop: after phaseMs, sample every periodMs, count times (forever
// if count < 0).
async function run(periodMs, count, phaseMs) {
  if (running) return false;
  running = true;
  if (phaseMs > 0) {
    await sleep(phaseMs);
    stateMs[state] += phaseMs;
  }
  let i = 0;
  while (count < 0 || i < count) {
    try {
      step(await readTemperature());
    } catch (e) {
      // A failed read must not leave the heater on with nobody watching.
      sensorErrors++;
      enter(IDLE);
    }
    samples++;
    await sleep(periodMs);
    stateMs[state] += periodMs;
    i++;
  }
  running = false;
  return true;
}

function configure(newSetpoint, newHysteresis) {
  setpoint = newSetpoint;
  if (newHysteresis !== undefined) hysteresis = newHysteresis;
  // Re-evaluate at once with the last reading so a big change acts now.
  if (samples > 0) step(lastTemperature);
  return setpoint;
}

function status() {
  return {
    state: STATE_NAMES[state],
    temperature: lastTemperature,
    setpoint: setpoint,
    transitions: transitions,
    samples: samples,
    sensorErrors: sensorErrors,
    idleMs: stateMs[IDLE],
    heatingMs: stateMs[HEATING],
    coolingMs: stateMs[COOLING],
  };
}

vmExport(1, run);
vmExport(2, configure);
vmExport(3, status);
