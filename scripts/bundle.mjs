#!/usr/bin/env node
// Bundles the compiled CLI (dist/src) into dist/bundle/cli.js with esbuild. Bundled code
// loads in ~1/3 of the time of ~40 ESM modules plus all of isomorphic-git and yargs, and
// code splitting puts each command (cli.ts imports only the one being run) and what only it
// needs into its own chunk, so a no-op `mstore commit` (target: 0.3 s in all) does not
// parse the merge kernels, the diff libraries or the remote transports. lmdb stays
// external: it loads a native addon. The hash worker is its own entry, next to the CLI.
import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

const result = await build({
  entryPoints: { cli: 'dist/src/cli/main.js', 'hash-worker': 'dist/src/lib/hash-worker.js' },
  outdir: 'dist/bundle',
  bundle: true,
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // vega, vega-lite and resvg (a native addon too) load from node_modules on first use by
  // `curves`: no other command parses them.
  external: ['lmdb', 'vega', 'vega-lite', '@resvg/resvg-js'],
  minify: true,
  logLevel: 'warning',
  metafile: true,
  // CommonJS dependencies inside an ESM bundle still call require() for node builtins.
  banner: { js: "import { createRequire as __mstoreRequire } from 'node:module'; const require = __mstoreRequire(import.meta.url);" },
});

// Chunk names carry content hashes: remove those of earlier builds (after writing the new
// ones, so a CLI running meanwhile never finds its entry missing).
const written = new Set(Object.keys(result.metafile.outputs).map((f) => path.resolve(f)));
for (const name of readdirSync('dist/bundle/chunks')) {
  const f = path.resolve('dist/bundle/chunks', name);
  if (!written.has(f)) rmSync(f, { force: true });
}
