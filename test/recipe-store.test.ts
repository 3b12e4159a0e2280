/**
 * Issue 19: consolidate keeps each merged weight file as its recipe (docs/format.md
 * §18) instead of its bytes. The version's files are the same (same content ids) as when bytes
 * are kept; a hook's output (a store's own hook, the torch worker) is kept so where the built-in
 * merge reproduces it; every reader rebuilds and checks the bytes (checkout, verify, a range read); gc keeps
 * a recipe's inputs after its base version is removed; materialize turns it back into bytes;
 * damage to an input chunk or to the record is found and refused; transfers that cannot carry a
 * recipe yet refuse in one line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cpSync, mkdirSync, readFileSync, rmSync, openSync, readSync, writeSync, closeSync, existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cleanup, mstore, mstoreJson, mstoreOk, sha256File, storeState, tmpDir, treeDigest } from './helpers.js';
import { current, ok as okEnv, READ_TOKEN, withBox } from './deploy-helpers.js';
import { withStoreAt } from './in-process.js';
import { hfPython } from './hf-helpers.js';
import { caseA, caseE, resetSeeds, storeCase, type Case } from './merge-cases.js';
import { listVersionFiles } from '../src/repo/version-files.js';
import { resolveRev } from '../src/repo/versions.js';
import { openReader } from '../src/ops/recipe.js';
import { packPath, readPackTable, ENTRY_RECIPE } from '../src/repo/pack.js';

const root = tmpDir('mstore-recipe-store-');
test.after(() => cleanup(root));

const ok = mstoreOk;

/** Bytes under the store's packs/ (what consolidate added). */
function packBytes(ws: string): number {
  return storeState(ws)
    .split('\n')
    .filter((l) => l.startsWith('.mstore/packs/'))
    .reduce((a, l) => a + Number(l.split(':').pop()), 0);
}

interface Pair {
  bytes: string;
  recipes: string;
  /** Pack bytes each consolidation added. */
  grew: { bytes: number; recipes: number };
}

/** The same case consolidated twice, in two stores: bytes kept (--store-bytes), and recipes kept (the default). */
function pair(name: string, c: Case): Pair {
  const bytes = storeCase(path.join(root, `${name}-bytes`), c.base, c.adapter);
  const recipes = storeCase(path.join(root, `${name}-recipes`), c.base, c.adapter);
  const before = { bytes: packBytes(bytes), recipes: packBytes(recipes) };
  ok(bytes, ['consolidate', '--base', 'v001:base', '--adapter', 'adapters/v001:adapter', '--worker', 'builtin', '--store-bytes']);
  const out = ok(recipes, ['consolidate', '--base', 'v001:base', '--adapter', 'adapters/v001:adapter', '--worker', 'builtin']);
  assert.match(out, /kept as recipes/);
  return { bytes, recipes, grew: { bytes: packBytes(bytes) - before.bytes, recipes: packBytes(recipes) - before.recipes } };
}

async function versionFiles(ws: string, rev: string): Promise<string[]> {
  return withStoreAt(ws, async (s) => (await listVersionFiles(s.repo, await resolveRev(s.repo, rev))).map((f) => `${f.path} ${f.mode} ${f.kind} ${f.oid}`));
}

function checkout(ws: string, rev: string, to: string): Map<string, string> {
  ok(ws, ['checkout', rev, '--to', to]);
  return treeDigest(to);
}

let A: Pair;

test('kept as recipes: the same version (same content ids), a fraction of the growth, a byte-identical checkout, verify and fsck clean', async () => {
  resetSeeds();
  A = pair('A', caseA(mkdirp(path.join(root, 'cases'))));
  assert.equal(await versionFiles(A.recipes, 'merged/v001'), await versionFiles(A.bytes, 'merged/v001'), 'the version records the same files either way');
  assert.ok(A.grew.bytes > 100_000, `bytes kept grow the store (${A.grew.bytes})`);
  assert.ok(A.grew.recipes * 20 < A.grew.bytes, `recipes grew the store by ${A.grew.recipes} bytes, bytes by ${A.grew.bytes}`);
  const cfg = (ws: string): unknown => JSON.parse(readFileSync(path.join(ws, '.mstore', 'config.json'), 'utf8')).format;
  assert.is(cfg(A.recipes), 'mstore/2', 'a store holding recipes says so');
  assert.is(cfg(A.bytes), 'mstore/1', 'a store without stays readable by older mstore');
  assert.equal(checkout(A.recipes, 'merged/v001', path.join(root, 'A-co-r')), checkout(A.bytes, 'merged/v001', path.join(root, 'A-co-b')));
  const v = mstoreJson<{ ok: boolean; bytes: number }>(A.recipes, ['verify', '--all']);
  assert.ok(v.ok);
  const fsck = mstoreJson<{ ok: boolean; index: { recipes: number } }>(A.recipes, ['fsck']);
  assert.ok(fsck.ok);
  assert.is(fsck.index.recipes, 2, 'one recipe per merged shard');
});

test("a hook's output is kept as recipes where the built-in merge reproduces it, checked by running it (the store's own hook, the torch worker); a file it does not reproduce keeps the bytes the hook wrote", async () => {
  resetSeeds();
  const c = caseA(mkdirp(path.join(root, 'cases-hook')));
  const hooked = (name: string, hook: string | undefined, args: string[]): { ws: string; kept: number; grew: number } => {
    const ws = storeCase(path.join(root, `hook-${name}`), c.base, c.adapter);
    if (hook !== undefined) writeFileSync(path.join(ws, '.mstore', 'hooks', 'consolidate'), hook, { mode: 0o755 });
    const before = packBytes(ws);
    const r = JSON.parse(ok(ws, ['consolidate', '--base', 'v001:base', '--adapter', 'adapters/v001:adapter', '--json', ...args])) as { recipes: number };
    return { ws, kept: r.recipes, grew: packBytes(ws) - before };
  };
  // The reference: the in-process merge (recipes) and --store-bytes (how much bytes grow a store).
  const ref = hooked('ref', undefined, ['--worker', 'builtin']);
  assert.is(ref.kept, 2);
  const reference = await versionFiles(ref.ws, 'merged/v001');
  const bytes = hooked('bytes', undefined, ['--worker', 'builtin', '--store-bytes']);
  assert.is(bytes.kept, 0);
  const shipped = readFileSync(path.join(ref.ws, '.mstore', 'hooks', 'consolidate'), 'utf8');
  // The store's own hook (the default, one comment longer: it gets directories and runs merge-lora).
  const own = hooked('own', `${shipped}\n// this store's own copy\n`, ['--worker', 'builtin']);
  assert.is(own.kept, 2, 'both shards kept as recipes');
  assert.ok(own.grew * 20 < bytes.grew, `the store grew by ${own.grew} bytes, by ${bytes.grew} with bytes kept`);
  assert.equal(await versionFiles(own.ws, 'merged/v001'), reference, 'the same version');
  assert.equal(checkout(own.ws, 'merged/v001', path.join(root, 'hook-own-co')), checkout(bytes.ws, 'merged/v001', path.join(root, 'hook-bytes-co')));
  // The torch worker (the shipped hook, --worker python): torch on the CPU sums as the kernel does.
  const torch = hooked('torch', undefined, ['--worker', 'python', '--python', hfPython()]);
  assert.is(torch.kept, 2, "the torch worker's shards kept as recipes");
  assert.equal(await versionFiles(torch.ws, 'merged/v001'), reference);
  // A hook whose second shard differs from the built-in merge by one bit: that shard keeps its bytes.
  const other = hooked(
    'other',
    `#!/usr/bin/env node
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const job = JSON.parse(fs.readFileSync(0, 'utf8'));
execFileSync(job.tools.node, [job.tools.mstore, 'merge-lora', '--base', job.base, '--adapter', job.adapter, '--out', job.output], { stdio: ['ignore', 'ignore', 'inherit'] });
const fd = fs.openSync(path.join(job.output, 'model-00002-of-00002.safetensors'), 'r+');
const at = fs.fstatSync(fd).size - 2; // the last element's low byte: a mantissa bit, the value stays finite
const b = Buffer.alloc(1);
fs.readSync(fd, b, 0, 1, at);
b[0] ^= 1;
fs.writeSync(fd, b, 0, 1, at);
fs.closeSync(fd);
`,
    [],
  );
  assert.is(other.kept, 1, 'the first shard kept as its recipe');
  const files = await versionFiles(other.ws, 'merged/v001');
  const oidOf = (list: string[], name: string): string => list.find((f) => f.startsWith(`${name} `))!.split(' ')[3];
  assert.is(oidOf(files, 'model-00001-of-00002.safetensors'), oidOf(reference, 'model-00001-of-00002.safetensors'));
  const second = oidOf(files, 'model-00002-of-00002.safetensors');
  assert.is.not(second, oidOf(reference, 'model-00002-of-00002.safetensors'), "the hook's own bytes");
  await withStoreAt(other.ws, async (s) => {
    assert.ok(s.index.file(Buffer.from(second, 'hex')), 'held in chunks');
    assert.ok(s.index.hasRecipe(Buffer.from(oidOf(files, 'model-00001-of-00002.safetensors'), 'hex')), 'held as its recipe');
  });
  const co = checkout(other.ws, 'merged/v001', path.join(root, 'hook-other-co'));
  assert.is(co.get('model-00002-of-00002.safetensors'), `${second}:-`, 'checked out as the hook wrote it');
  assert.ok(mstoreJson<{ ok: boolean }>(other.ws, ['verify', '--all']).ok);

  // A hook that leaves its second shard as a link into blobs/ (a Hugging Face snapshot's layout):
  // the link is recorded as the hook left it, the first shard still kept as its recipe.
  const linked = hooked(
    'linked',
    `#!/usr/bin/env node
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const job = JSON.parse(fs.readFileSync(0, 'utf8'));
execFileSync(job.tools.node, [job.tools.mstore, 'merge-lora', '--base', job.base, '--adapter', job.adapter, '--out', job.output], { stdio: ['ignore', 'ignore', 'inherit'] });
fs.mkdirSync(path.join(job.output, 'blobs'));
fs.renameSync(path.join(job.output, 'model-00002-of-00002.safetensors'), path.join(job.output, 'blobs', 'b2'));
fs.symlinkSync('blobs/b2', path.join(job.output, 'model-00002-of-00002.safetensors'));
`,
    [],
  );
  assert.is(linked.kept, 1, 'the regular shard kept as its recipe');
  const linkedFiles = await versionFiles(linked.ws, 'merged/v001');
  assert.ok(linkedFiles.some((f) => f.startsWith('model-00002-of-00002.safetensors 120000 link')), linkedFiles.join('\n'));
  assert.is(oidOf(linkedFiles, 'blobs/b2'), oidOf(reference, 'model-00002-of-00002.safetensors'), 'the file it links to holds the merge');

  // An adapter the built-in merge refuses (made for another base), through a hook that ignores it
  // and copies the base: nothing to reproduce, the consolidation keeps the hook's bytes.
  const e = caseE(mkdirp(path.join(root, 'cases-hook-e')));
  const foreign = storeCase(path.join(root, 'hook-foreign'), c.base, e.adapter);
  const copyHook = `#!/bin/sh\nset -e\nout=$(node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);console.log(j.base+"\\n"+j.output)})')\ncp -r "$(echo "$out" | head -1)" "$(echo "$out" | tail -1)"\n`;
  writeFileSync(path.join(foreign, '.mstore', 'hooks', 'consolidate'), copyHook, { mode: 0o755 });
  const r = JSON.parse(ok(foreign, ['consolidate', '--base', 'v001:base', '--adapter', 'adapters/v001:adapter', '--json'])) as { recipes: number };
  assert.is(r.recipes, 0, 'kept as bytes');
  const copied = await versionFiles(foreign, 'merged/v001');
  assert.is(oidOf(copied, 'model-00001-of-00002.safetensors'), oidOf(await versionFiles(foreign, 'v001'), 'base/model-00001-of-00002.safetensors'), "the hook's output: the base's bytes");

  // An adapter whose every value is about 1.7e38: the built-in merge overflows to Inf, while the
  // hook (it copies the base) wrote finite values. Not reproduced: the hook's bytes are kept.
  const huge = mkdirp(path.join(root, 'cases-hook-huge'));
  cpSync(c.adapter, huge, { recursive: true });
  const st = path.join(huge, 'adapter_model.safetensors');
  const data = readFileSync(st);
  const dataStart = 8 + Number(data.readBigUInt64LE(0));
  for (let i = dataStart; i + 1 < data.length; i += 2) data.writeUInt16LE(0x7f00, i);
  writeFileSync(st, data);
  const overflow = storeCase(path.join(root, 'hook-huge'), c.base, huge);
  writeFileSync(path.join(overflow, '.mstore', 'hooks', 'consolidate'), copyHook, { mode: 0o755 });
  const h = JSON.parse(ok(overflow, ['consolidate', '--base', 'v001:base', '--adapter', 'adapters/v001:adapter', '--json'])) as { recipes: number };
  assert.is(h.recipes, 0, 'kept as bytes');
});

test('a range read rebuilds and returns the same bytes as the whole file (the Hugging Face API and diff read ranges)', async () => {
  const want = readFileSync(path.join(root, 'A-co-b', 'model-00001-of-00002.safetensors'));
  await withStoreAt(A.recipes, async (s) => {
    const f = (await listVersionFiles(s.repo, await resolveRev(s.repo, 'merged/v001'))).find((x) => x.path === 'model-00001-of-00002.safetensors')!;
    assert.ok(s.index.hasRecipe(Buffer.from(f.oid, 'hex')) && !s.index.hasFile(Buffer.from(f.oid, 'hex')), 'kept as a recipe only');
    const reader = openReader(s);
    try {
      assert.ok((await reader.readRange(f.oid, 1000, 5000)).equals(want.subarray(1000, 6000)));
      assert.ok((await reader.readRange(f.oid, 0, f.size)).equals(want));
    } finally {
      await reader.close();
    }
  });
});

test('diff --tensors --stats of a version kept as recipes says what it says of the same version kept as bytes', async () => {
  const out: string[] = [];
  for (const ws of [A.bytes, A.recipes]) {
    for (const f of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) cpSync(path.join(ws, 'base', f), path.join(ws, f));
    const r = mstore(ws, ['diff', 'merged/v001', 'workspace', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', '--tensors', '--stats', '--json']);
    assert.ok(r.code === 0 || r.code === 1, r.stderr);
    const d = JSON.parse(r.stdout) as { files: unknown; tensors: unknown };
    out.push(JSON.stringify({ files: d.files, tensors: d.tensors }, null, 1));
    for (const f of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) rmSync(path.join(ws, f));
  }
  assert.match(out[0], /"status": "changed"/);
  assert.is(out[1], out[0]);
});

test("gc keeps a recipe's inputs when its base and adapter versions are removed; materialize stores the bytes, after which gc frees the inputs", async () => {
  const ws = A.recipes;
  ok(ws, ['rm', 'v001', 'adapters/v001', '--confirm', '--no-backup']);
  ok(ws, ['gc', '--grace', '0']);
  assert.ok(mstoreJson<{ ok: boolean }>(ws, ['verify', '--all']).ok, 'the merged version still verifies (rebuilt from kept inputs)');
  assert.equal(checkout(ws, 'merged/v001', path.join(root, 'A-co-r2')), treeDigest(path.join(root, 'A-co-b')));
  const before = packBytes(ws);
  const m = mstoreJson<{ files: string[]; newBytes: number }>(ws, ['materialize', 'merged/v001']);
  assert.equal(m.files.sort(), ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
  assert.ok(packBytes(ws) > before, 'the bytes are stored');
  assert.is(mstoreJson<{ index: { recipes: number } }>(ws, ['fsck']).index.recipes, 0, 'the recipes are replaced');
  assert.match(ok(ws, ['materialize', 'merged/v001']), /nothing to do/);
  const grown = packBytes(ws);
  ok(ws, ['gc', '--grace', '0']);
  assert.ok(packBytes(ws) < grown, 'the inputs only the recipes needed are freed');
  assert.equal(checkout(ws, 'merged/v001', path.join(root, 'A-co-r3')), treeDigest(path.join(root, 'A-co-b')));
  assert.ok(mstoreJson<{ ok: boolean }>(ws, ['fsck']).ok);
});

/** Flips one byte of a pack file at `at`. */
function flip(file: string, at: number): void {
  const fd = openSync(file, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0] ^= 0x01;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
}

test('damage: a flipped byte in an input chunk is found by verify and refused by checkout (nothing written); a changed recipe record is found by fsck and verify', async () => {
  resetSeeds();
  const e = pair('E', caseE(mkdirp(path.join(root, 'cases-e'))));
  const ws = e.recipes;
  const state = storeState(ws);
  // The base's weights (the recipe's input), somewhere past its header.
  const base = await withStoreAt(ws, async (s) => {
    const f = (await listVersionFiles(s.repo, await resolveRev(s.repo, 'v001'))).find((x) => x.path === 'base/model.safetensors')!;
    const m = s.index.file(Buffer.from(f.oid, 'hex'))!;
    const last = m.chunks[m.chunks.length - 1];
    return { loc: s.index.chunk(last.id)!, chunk: last.id.toString('hex') };
  });
  const packFile = path.join(ws, '.mstore', 'packs', base.loc.pack.slice(0, 2), `${base.loc.pack}.pack`);
  flip(packFile, base.loc.offset + 10);
  const v = mstore(ws, ['verify', 'merged/v001']);
  assert.is(v.code, 1);
  assert.match(v.stdout + v.stderr, base.chunk);
  const to = path.join(root, 'E-damaged');
  const c = mstore(ws, ['checkout', 'merged/v001', '--to', to]);
  assert.is(c.code, 1);
  assert.not.match(c.stderr, /\n\s+at /, 'no stack trace');
  assert.match(c.stderr, `chunk ${base.chunk} in pack ${base.loc.pack} is damaged`, 'the damaged chunk named');
  assert.ok(!existsSync(path.join(to, 'model.safetensors')), 'nothing written');
  flip(packFile, base.loc.offset + 10);
  assert.ok(mstoreJson<{ ok: boolean }>(ws, ['verify', '--all']).ok, 'mended');
  assert.is(storeState(ws), state);

  // The recipe record in its pack: its alpha changed (a sound record, other bytes), and the index rebuilt from the packs.
  const rec = await withStoreAt(ws, async (s) => {
    for (const id of s.index.packIds()) {
      const entry = (await readPackTable(s.packsDir, id)).find((x) => x.type === ENTRY_RECIPE);
      if (entry) return { file: packPath(s.packsDir, id), entry };
    }
    throw new Error('no recipe entry');
  });
  const fd = openSync(rec.file, 'r+');
  const text = Buffer.alloc(rec.entry.length);
  readSync(fd, text, 0, text.length, rec.entry.offset);
  // kohya: the alpha is a tensor, so the record names only ids; change the adapter's size instead (still canonical JSON).
  const s = text.toString('latin1');
  const at = s.lastIndexOf('"size":') + 7;
  const digit = s[at] === '9' ? '8' : String(Number(s[at]) + 1);
  writeSync(fd, Buffer.from(digit, 'latin1'), 0, 1, rec.entry.offset + at);
  closeSync(fd);
  const f = JSON.parse(mstore(ws, ['fsck', '--json']).stdout) as { ok: boolean; problems: string[] };
  assert.not.ok(f.ok);
  assert.ok(f.problems.some((p) => /recipe [0-9a-f]{64} in pack [0-9a-f]{64} differs from its index row/.test(p)), f.problems.join('\n'));
  ok(ws, ['fsck', '--repair-index']);
  const v2 = mstore(ws, ['verify', 'merged/v001']);
  assert.is(v2.code, 1, 'the changed record, now in the index too, is refused');
  assert.match(v2.stdout, /recipe's input|bytes in the recipe/);

  // A recipe of a kernel version this mstore does not implement: reported with the version needed, never rebuilt.
  const fd2 = openSync(rec.file, 'r+');
  writeSync(fd2, Buffer.from(s[at], 'latin1'), 0, 1, rec.entry.offset + at); // the size as it was
  const k = s.indexOf('"kernel":"mstore-merge/1"') + '"kernel":"mstore-merge/'.length;
  writeSync(fd2, Buffer.from('7', 'latin1'), 0, 1, rec.entry.offset + k);
  closeSync(fd2);
  ok(ws, ['fsck', '--repair-index']);
  const v3 = mstore(ws, ['verify', 'merged/v001', '--quick']);
  assert.is(v3.code, 1);
  assert.match(v3.stdout, /merge kernel mstore-merge\/7; this mstore implements mstore-merge\/1 only/);
  const c3 = mstore(ws, ['checkout', 'merged/v001', '--to', path.join(root, 'E-kernel')]);
  assert.is(c3.code, 1);
  assert.match(c3.stderr, /mstore-merge\/7/);
  assert.ok(!existsSync(path.join(root, 'E-kernel', 'model.safetensors')), 'nothing written');
});

test('transfers carry the recipe: push to a store holding base and adapter sends no chunk; the remote rebuilt it before its refs moved; clone, backup and a bundle take the recipe and its inputs; the files layout the rebuilt bytes', async () => {
  const ws = path.join(root, 'A-push');
  resetSeeds();
  const c = caseA(mkdirp(path.join(root, 'cases-push')));
  storeCase(ws, c.base, c.adapter);
  ok(ws, ['consolidate', '--base', 'v001:base', '--adapter', 'adapters/v001:adapter', '--worker', 'builtin']);
  const remote = path.join(root, 'remote');
  ok(root, ['init', '--bare', remote]);
  ok(ws, ['push', remote, 'v001', 'adapters/v001']);
  const p = mstoreJson<{ chunksSent: number; filesSent: number; recipesSent: number; bytesSent: number }>(ws, ['push', remote, 'merged/v001']);
  assert.is(p.chunksSent, 0, 'no chunk: the remote holds the inputs');
  assert.is(p.filesSent, 0);
  assert.is(p.recipesSent, 2);
  const merged = [...treeDigest(path.join(root, 'A-co-b'))].filter(([f]) => f.endsWith('.safetensors'));
  assert.equal(checkout(remote, 'merged/v001', path.join(root, 'remote-co')), treeDigest(path.join(root, 'A-co-b')), 'the remote checks out the same bytes');
  assert.ok(merged.length === 2);
  assert.is(mstoreJson<{ index: { recipes: number } }>(remote, ['fsck']).index.recipes, 2, 'kept there as recipes too');

  // A clone of only the merged version fetches its recipes and the inputs they read.
  const cl = path.join(root, 'A-clone');
  ok(root, ['clone', remote, cl]);
  assert.is(mstoreJson<{ index: { recipes: number } }>(cl, ['fsck']).index.recipes, 2);
  assert.ok(mstoreJson<{ ok: boolean }>(cl, ['verify', '--all']).ok);
  assert.equal(checkout(cl, 'merged/v001', path.join(root, 'clone-co')), treeDigest(path.join(root, 'A-co-b')));

  // A backup of the merged version alone copies its recipes and their inputs, proven there.
  const bk = path.join(root, 'A-backup');
  ok(ws, ['backup', 'add', 'bk', bk]);
  ok(ws, ['backup', 'merged/v001']);
  assert.is(mstoreJson<{ index: { recipes: number } }>(bk, ['fsck']).index.recipes, 2);
  assert.ok(mstoreJson<{ ok: boolean }>(bk, ['verify', '--all']).ok);

  // A bundle of the merged version alone carries its recipes and their inputs; a fresh store imports
  // it, proving each recipe, and checks it out bit for bit. The files layout holds the rebuilt bytes.
  const tar = path.join(root, 'm.tar');
  const x = mstoreJson<{ manifests: number; chunks: number; bytes: number }>(ws, ['export', 'merged/v001', '-o', tar]);
  assert.ok(x.bytes < 1.5 * packBytes(ws), `a bundle of ${x.bytes} bytes carries the inputs (the store holds ${packBytes(ws)}), not the merged bytes too`);
  const im = path.join(root, 'A-import');
  ok(root, ['init', im]);
  ok(im, ['import', tar]);
  assert.is(mstoreJson<{ index: { recipes: number } }>(im, ['fsck']).index.recipes, 2);
  assert.equal(checkout(im, 'merged/v001', path.join(root, 'import-co')), treeDigest(path.join(root, 'A-co-b')));
  const files = path.join(root, 'm-files.tar');
  ok(ws, ['export', 'merged/v001', '-o', files, '--format', 'files']);
  const fl = path.join(root, 'A-import-files');
  ok(root, ['init', fl]);
  ok(fl, ['import', files]);
  assert.equal(checkout(fl, 'merged/v001', path.join(root, 'import-files-co')), treeDigest(path.join(root, 'A-co-b')));
});

test('a recipe whose rebuild does not hash to its id is refused by the receiver, and no ref moves', async () => {
  const ws = path.join(root, 'A-push');
  // The remote holds base and adapter, but a chunk of the base there is damaged: its proof of the recipe fails.
  const remote = path.join(root, 'remote2');
  ok(root, ['init', '--bare', remote]);
  ok(ws, ['push', remote, 'v001', 'adapters/v001']);
  await withStoreAt(remote, async (s) => {
    // Damage the remote's copy of the base's last chunk: the proof reads it.
    const f = (await listVersionFiles(s.repo, await resolveRev(s.repo, 'v001'))).find((x) => x.path === 'base/model-00002-of-00002.safetensors')!;
    const m = s.index.file(Buffer.from(f.oid, 'hex'))!;
    const loc = s.index.chunk(m.chunks[m.chunks.length - 1].id)!;
    flip(packPath(s.packsDir, loc.pack), loc.offset + 5);
  });
  const p = mstore(ws, ['push', remote, 'merged/v001']);
  assert.is(p.code, 1);
  assert.match(p.stderr, /damaged|hash/);
  assert.is(p.stderr.trim().split('\n').length, 1, p.stderr);
  assert.not.ok(mstore(remote, ['log', '--json']).stdout.includes('merged'), 'no ref moved');
  assert.is(mstoreJson<{ index: { recipes: number } }>(remote, ['fsck', '--repair-index']).index.recipes, 0, 'no recipe recorded, even from its packs');
});

test('deploy over HTTP of a merged version kept as recipes to a box holding its base and adapter: sends no chunk, the box rebuilds it and goes live with files whose sha256 are the version\'s', () =>
  withBox('mstore-recipe-deploy-', async (b) => {
    resetSeeds();
    const c = caseA(mkdirp(path.join(b.root, 'cases')));
    cpSync(c.base, path.join(b.ws, 'base'), { recursive: true });
    okEnv(b.ws, ['commit', '-m', 'base', 'base']);
    cpSync(c.adapter, path.join(b.ws, 'adapter'), { recursive: true });
    okEnv(b.ws, ['commit', '-m', 'adapter', '--line', 'adapters', 'adapter']);
    okEnv(b.ws, ['consolidate', '--base', 'v001:base', '--adapter', 'adapters/v001:adapter', '--worker', 'builtin']);
    okEnv(b.ws, ['push', 'box', 'v001', 'adapters/v001']);
    const d = JSON.parse(okEnv(b.ws, ['deploy', 'box', 'merged/v001', '--json'])) as { push: { chunksSent: number; recipesSent: number } };
    assert.is(d.push.chunksSent, 0, 'no chunk sent');
    assert.is(d.push.recipesSent, 2);
    assert.is(current(b), 'merged--v001');
    const dir = path.join(b.deployRoot, current(b));
    for (const f of JSON.parse(okEnv(b.ws, ['show', 'merged/v001', '--json'])).files as { path: string; oid: string }[]) {
      assert.is(sha256File(path.join(dir, f.path)), f.oid, f.path);
    }
    // The box's Hugging Face API serves the rebuilt bytes: a whole file, and a range of it.
    const want = readFileSync(path.join(dir, 'model-00001-of-00002.safetensors'));
    const url = `${b.server.url}/box/resolve/merged%2Fv001/model-00001-of-00002.safetensors`;
    const auth = { authorization: `Bearer ${READ_TOKEN}` };
    const whole = await fetch(url, { headers: auth });
    assert.is(whole.status, 200);
    assert.ok(Buffer.from(await whole.arrayBuffer()).equals(want), 'the whole file');
    const part = await fetch(url, { headers: { ...auth, range: 'bytes=1000-50999' } });
    assert.is(part.status, 206);
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(want.subarray(1000, 51000)), 'a range of it');
  }),
);

function mkdirp(d: string): string {
  mkdirSync(d, { recursive: true });
  return d;
}

test.run();
