// Bugs in the pinned Microvium compiler (microvium@8.0.0), fixed as it loads: the package in
// engine/node_modules stays untouched.  Two users, one list:
// * engine/bundle-compiler.mjs applies them to the files it bundles (the wheel's compiler);
// * a dev checkout runs the package's cli.js with `node --require engine/compiler-patches.cjs`
//   (mvactors/compiler.py), and this file, preloaded, patches the same files as Node loads them.
// Each (old, new) pair must occur exactly once in its file, so a version bump that changes the
// code fails loudly instead of silently dropping the fix.
"use strict";

const PATCHES = {
  // A block scope that allocates its own closure slots (a loop body declaring a variable that a
  // closure captures) is created with ScopeNew, without a reference to the enclosing scope, when
  // no *nested function* reads through it.  But the block's own code can read a closure-allocated
  // variable of an enclosing scope of the same function (in
  //   function f(seed) { let h = () => seed; for (...) { const own = 'c' + seed; h = () => own; } }
  // the loop body reads `seed`), and pass 3 computes that access as a hop over the block's slots
  // to its parent: with no parent-reference slot the engine took the block's last variable (or
  // its "deleted" initial value) as the parent scope and read whatever it pointed at: `seed`
  // came out as undefined, a string or NaN, differently in the wasm and native builds
  // (tests/vm/test_gc_property.py: "after five objects, depth 11 reads 'cNaN'").  Before slots are
  // computed, every block between a same-function reference and its binding now keeps a
  // reference to its parent, as a nested function's reference already makes it do.  A block
  // with no closure slots of its own is unaffected; one with some gains one slot (2 bytes).
  "analyze-scopes/index.js": [
    [
      "(0, pass_2_compute_slots_1.pass2_computeSlots)(analysisState);",
      // (The package's files have CRLF line ends; the inserted lines are LF, which JavaScript takes too.)
      "for (const reference of analysisState.model.references.values()) {\n" +
        "        if (reference.resolvesTo.type !== 'Binding' || !reference.isInLocalFunction) continue;\n" +
        "        const bindingScope = reference.resolvesTo.binding.scope;\n" +
        "        if (bindingScope.type === 'ModuleScope') continue;\n" +
        "        for (let s = reference.nearestScope; s && s !== bindingScope; s = s.parent) {\n" +
        "            if (s.type === 'BlockScope') s.accessesParentScope = true;\n" +
        "        }\n" +
        "    }\n" +
        "    (0, pass_2_compute_slots_1.pass2_computeSlots)(analysisState);",
    ],
  ],
};

/** The patch list for a file path, or undefined: matched by its tail under dist/lib/src-to-il/. */
function patchesFor(filename) {
  const normalized = filename.split("\\").join("/");
  for (const [tail, patches] of Object.entries(PATCHES)) {
    if (normalized.endsWith("/microvium/dist/lib/src-to-il/" + tail)) return patches;
  }
  return undefined;
}

/** `source` with `patches` applied; throws unless each old text occurs exactly once. */
function applyPatches(filename, source, patches) {
  for (const [before, after] of patches) {
    const count = source.split(before).length - 1;
    if (count !== 1) {
      throw new Error(`engine/compiler-patches.cjs: expected one occurrence of ${JSON.stringify(before)} ` +
        `in ${filename}, found ${count}`);
    }
    source = source.replace(before, () => after);
  }
  return source;
}

module.exports = { PATCHES, patchesFor, applyPatches };

// Preloaded (node --require): patch the files as the compiler requires them.  (Loaded by the
// bundler instead, the hook is idle: esbuild reads sources itself.)
const fs = require("node:fs");
const Module = require("node:module");
const loadJs = Module._extensions[".js"];
Module._extensions[".js"] = function (module, filename) {
  const patches = patchesFor(filename);
  if (!patches) return loadJs(module, filename);
  module._compile(applyPatches(filename, fs.readFileSync(filename, "utf8"), patches), filename);
};
