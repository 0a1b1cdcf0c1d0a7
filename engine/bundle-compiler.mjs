// Bundle the pinned Microvium compiler CLI and everything it requires into one JavaScript file,
// so a wheel can compile guest scripts with any Node.js and no node_modules.
//   node engine/bundle-compiler.mjs OUTFILE
// Run by the wheel build (build_hook.py); esbuild is pinned in package.json devDependencies.
import { build } from "esbuild";
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
// Fixes to the compiler's own code, applied to the files as they are bundled.
const { PATCHES, patchesFor, applyPatches } = createRequire(import.meta.url)("./compiler-patches.cjs");
const patched = new Set();
const microvium = join(here, "node_modules", "microvium");
const outfile = process.argv[2];
if (!outfile) {
  console.error("usage: node engine/bundle-compiler.mjs OUTFILE");
  process.exit(2);
}

// builtin-globals.js reads its runtime library next to itself at run time; the bundle has no
// "next to itself", so the text goes in as a string literal.
const runtimeLibraryRead = "fs_1.default.readFileSync(path_1.default.join(__dirname, './runtime-library.mvm.js'), 'utf8')";

const plugin = {
  name: "microvium-compiler-only",
  setup(b) {
    // The native VM addon runs scripts; compiling (--snapshot) never constructs it.
    b.onResolve({ filter: /^node-gyp-build$/ }, () => ({ path: "no-native-vm", namespace: "mvactors" }));
    b.onLoad({ filter: /.*/, namespace: "mvactors" }, () => ({
      loader: "js",
      contents: `class NativeVM {
  constructor() { throw new Error("this Microvium compiler bundle only compiles (--snapshot); it cannot run scripts"); }
}
module.exports = () => ({ NativeVM });`,
    }));
    b.onLoad({ filter: /[\\/]microvium[\\/]dist[\\/]lib[\\/]builtin-globals\.js$/ }, (args) => {
      const source = readFileSync(args.path, "utf8");
      if (source.split(runtimeLibraryRead).length !== 2) {
        throw new Error("builtin-globals.js changed: update the runtime-library inlining in bundle-compiler.mjs");
      }
      const library = readFileSync(join(dirname(args.path), "runtime-library.mvm.js"), "utf8");
      return { loader: "js", contents: source.replace(runtimeLibraryRead, JSON.stringify(library)) };
    });
    b.onLoad({ filter: /[\\/]microvium[\\/]dist[\\/]lib[\\/]src-to-il[\\/].*\.js$/ }, (args) => {
      const patches = patchesFor(args.path);
      if (!patches) return undefined;
      patched.add(args.path);
      return { loader: "js", contents: applyPatches(args.path, readFileSync(args.path, "utf8"), patches) };
    });
  },
};

await build({
  entryPoints: [join(microvium, "dist", "cli.js")],
  bundle: true,
  platform: "node",
  target: "node18",
  outfile,
  legalComments: "eof",
  logLevel: "warning",
  plugins: [plugin],
});
if (patched.size !== Object.keys(PATCHES).length) {
  throw new Error(`bundle-compiler.mjs: patched ${patched.size} of the ${Object.keys(PATCHES).length} files in compiler-patches.cjs`);
}
