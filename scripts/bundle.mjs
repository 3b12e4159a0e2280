#!/usr/bin/env node
// Bundles the compiled CLI (dist/src) into dist/bundle/cli.js with esbuild. One tree-shaken
// file loads in ~1/3 of the time of ~40 ESM modules plus all of isomorphic-git and yargs,
// which matters for a no-op `mstore commit` (target: 0.3 s in all). lmdb stays external:
// it loads a native addon. The hash worker is its own entry, next to the CLI.
import { build } from 'esbuild';

await build({
  entryPoints: { cli: 'dist/src/cli.js', 'hash-worker': 'dist/src/store/hash-worker.js' },
  outdir: 'dist/bundle',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // vega, vega-lite and resvg (a native addon too) load from node_modules on first use by
  // `curves`: no other command parses them.
  external: ['lmdb', 'vega', 'vega-lite', '@resvg/resvg-js'],
  minify: true,
  logLevel: 'warning',
  // CommonJS dependencies inside an ESM bundle still call require() for node builtins.
  banner: { js: "import { createRequire as __mstoreRequire } from 'node:module'; const require = __mstoreRequire(import.meta.url);" },
});
