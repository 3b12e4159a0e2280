/**
 * Issue 19: consolidate with the default hook's built-in worker merges in-process, from the
 * store's chunks into its object sink, with no work area; a store's own hook still gets
 * directories. Both paths record the same files, byte for byte (case A: shards and their index,
 * an embedding LoRA, a replaced lm_head, config.json adjusted, a stale .bin left out, nested,
 * linked and large non-weight files kept; case E: a kohya LoRA). A damaged chunk of the base
 * stops the in-process merge at step 'merge', naming the file, with the store unchanged.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync, writeFileSync, openSync, readSync, writeSync, closeSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { cleanup, mstore, storeState, tmpDir, treeDigest } from './helpers.js';
import { withStoreAt } from './in-process.js';
import { caseA, caseE, resetSeeds, storeCase } from './merge-cases.js';
import { consolidate, type ConsolidateStep } from '../src/ops/consolidate.js';
import { listVersionFiles } from '../src/repo/version-files.js';
import { readMeta, resolveRev } from '../src/repo/versions.js';
import { MstoreError } from '../src/lib/errors.js';
import { MERGE_KERNEL } from '../src/merge/kernel.js';
import { packPath } from '../src/repo/pack.js';

const root = tmpDir('mstore-consolidate-stream-');
test.after(() => cleanup(root));

interface Run {
  version: string;
  steps: ConsolidateStep[];
  /** Whether .mstore/tmp held a consolidate work area when the merge had finished. */
  workArea: boolean;
  files: string[];
  kernel: unknown;
}

async function run(ws: string): Promise<Run> {
  return withStoreAt(ws, async (s) => {
    const steps: ConsolidateStep[] = [];
    let workArea = false;
    const r = await consolidate(s, {
      base: 'v001',
      adapter: 'adapters/v001',
      worker: 'builtin',
      onStep: (step) => {
        steps.push(step);
        if (step === 'validate' || step === 'commit') workArea ||= readdirSync(s.tmpDir).some((n) => n.startsWith('consolidate-'));
      },
    });
    const commit = await resolveRev(s.repo, r.version);
    const files = (await listVersionFiles(s.repo, commit)).map((f) => `${f.path} ${f.mode} ${f.kind} ${f.oid}`);
    const meta = (await readMeta(s.repo, commit)) as { meta?: { consolidation?: { kernel?: unknown } } } | undefined;
    return { version: r.version, steps, workArea, files, kernel: meta?.meta?.consolidation?.kernel };
  });
}

/** Makes the store's consolidate hook its own: the default, one comment longer (it then gets directories). */
function ownHook(ws: string): void {
  const hook = path.join(ws, '.mstore', 'hooks', 'consolidate');
  writeFileSync(hook, `${readFileSync(hook, 'utf8')}\n// this store's own copy\n`);
  chmodSync(hook, 0o755);
}

test('in-process and through a hook, consolidate records the same files; only the hook path has a work area', async () => {
  resetSeeds();
  const a = caseA(mkdirp(path.join(root, 'cases')));
  const ws = storeCase(path.join(root, 'A'), a.base, a.adapter, (dir) => {
    writeFileSync(path.join(dir, 'vocab.bin'), randomBytes(6 * 1024 * 1024)); // stored in chunks, kept by reference
    symlinkSync('config.json', path.join(dir, 'config-link.json'));
  });
  const streamed = await run(ws);
  assert.equal(streamed.steps, ['resolve', 'verify', 'backup', 'merge', 'commit']);
  assert.not.ok(streamed.workArea, 'no work area');
  assert.is(streamed.kernel, MERGE_KERNEL);
  ownHook(ws);
  const hooked = await run(ws);
  assert.equal(hooked.steps, ['resolve', 'verify', 'backup', 'materialise', 'merge', 'validate', 'commit']);
  assert.ok(hooked.workArea, 'the hook path has its work area (so the check above can fail)');
  assert.is(hooked.kernel, undefined);
  assert.equal(streamed.files, hooked.files);
  const names = streamed.files.map((f) => f.split(' ')[0]);
  for (const p of ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'config.json', 'config-link.json', 'extra/notes.txt', 'vocab.bin']) {
    assert.ok(names.includes(p), `${p} is in the merged version`);
  }
  assert.not.ok(names.includes('pytorch_model.bin'), 'stale weights are left out');
  const config = streamed.files.find((f) => f.startsWith('config.json '))!;
  const baseConfig = (await withStoreAt(ws, async (s) => listVersionFiles(s.repo, await resolveRev(s.repo, 'v001')))).find((f) => f.path === 'base/config.json')!;
  assert.is.not(config.split(' ')[3], baseConfig.oid, 'config.json is adjusted (the adapter changes the tied embedding)');
  assert.is(mstore(ws, ['verify', '--all']).code, 0);
});

test('a kohya LoRA, and a base whose weights file is a symlink (as in a Hugging Face snapshot), merge in-process to the same files as through a hook', async () => {
  resetSeeds();
  const e = caseE(mkdirp(path.join(root, 'cases')));
  const ws = storeCase(path.join(root, 'E'), e.base, e.adapter, (dir) => {
    mkdirSync(path.join(dir, 'blobs'));
    renameSync(path.join(dir, 'model.safetensors'), path.join(dir, 'blobs', 'f00d'));
    symlinkSync('blobs/f00d', path.join(dir, 'model.safetensors'));
  });
  const streamed = await run(ws);
  assert.ok(streamed.steps.includes('merge') && !streamed.steps.includes('materialise'), streamed.steps.join(','));
  ownHook(ws);
  assert.equal(streamed.files, (await run(ws)).files);
});

test('links are followed as a checkout follows them: a Hugging Face snapshot layout, a link through a linked directory, an adapter inside the base; the result equals merge-lora on a full checkout', async () => {
  resetSeeds();
  const e = caseE(mkdirp(path.join(root, 'cases-links')));
  const ws = path.join(root, 'links');
  mkdirSync(ws);
  assert.is(mstore(ws, ['init']).code, 0);
  const snap = path.join(ws, 'snap', 'snapshots', 'abc');
  mkdirSync(snap, { recursive: true });
  mkdirSync(path.join(ws, 'snap', 'blobs'));
  mkdirSync(path.join(ws, 'deep', 'x'), { recursive: true });
  writeFileSync(path.join(ws, 'snap', 'blobs', 'w1'), readFileSync(path.join(e.base, 'model.safetensors')));
  writeFileSync(path.join(ws, 'snap', 'blobs', 'c1'), JSON.stringify({ model_type: 'unet' }));
  symlinkSync('../../blobs/w1', path.join(snap, 'model.safetensors'));
  symlinkSync('../../blobs/c1', path.join(snap, 'config.json'));
  writeFileSync(path.join(snap, 'extra.txt'), 'inside\n');
  symlinkSync('extra.txt', path.join(snap, 'notes.txt')); // a link inside: kept as a link
  // foo/../t.json: through the linked directory foo (deep/x), so deep/t.json, not abc/t.json.
  symlinkSync('../../../deep/x', path.join(snap, 'foo'));
  writeFileSync(path.join(snap, 't.json'), '"the text reading"');
  writeFileSync(path.join(ws, 'deep', 't.json'), '"what a checkout reads"');
  writeFileSync(path.join(ws, 'deep', 'x', 'keep.txt'), 'a directory git keeps\n');
  symlinkSync('foo/../t.json', path.join(snap, 'tok.json'));
  // The adapter lies inside the base directory, in the same version.
  mkdirSync(path.join(snap, 'lora'));
  writeFileSync(path.join(snap, 'lora', 'style.safetensors'), readFileSync(e.adapter));
  assert.is(mstore(ws, ['commit', '-m', 'snapshot']).code, 0);
  const r = mstore(ws, ['consolidate', '--base', 'v001:snap/snapshots/abc', '--adapter', 'v001:snap/snapshots/abc/lora', '--worker', 'builtin']);
  assert.is(r.code, 0, r.stderr);
  const full = path.join(root, 'links-full');
  assert.is(mstore(ws, ['checkout', 'v001', '--to', full]).code, 0);
  const direct = path.join(root, 'links-direct');
  const base = path.join(full, 'snap', 'snapshots', 'abc');
  const m = mstore(ws, ['merge-lora', '--base', base, '--adapter', path.join(base, 'lora', 'style.safetensors'), '--out', direct]);
  assert.is(m.code, 0, m.stderr);
  const merged = path.join(root, 'links-merged');
  assert.is(mstore(ws, ['checkout', 'merged/v001', '--to', merged]).code, 0);
  const got = treeDigest(merged);
  assert.equal([...got].sort(), [...treeDigest(direct)].sort());
  assert.is(got.get('notes.txt'), 'link:extra.txt');
  assert.is(readFileSync(path.join(merged, 'tok.json'), 'utf8'), '"what a checkout reads"');
  assert.is(readFileSync(path.join(merged, 'config.json'), 'utf8'), JSON.stringify({ model_type: 'unet' }));
  assert.not.ok([...got.keys()].some((p) => p.startsWith('lora/')), 'nothing of the adapter is copied');
});

test("a damaged chunk of the base stops the in-process merge at step 'merge', naming the file; nothing is recorded", async () => {
  resetSeeds();
  const a = caseA(mkdirp(path.join(root, 'cases-damaged')));
  const ws = storeCase(path.join(root, 'damaged'), a.base, a.adapter);
  const shard = 'base/model-00002-of-00002.safetensors';
  const oid = await withStoreAt(ws, async (s) => (await listVersionFiles(s.repo, await resolveRev(s.repo, 'v001'))).find((f) => f.path === shard)!.oid);
  // Flip one byte in the middle of the shard's first chunk, where its pack holds it.
  const loc = await withStoreAt(ws, async (s) => {
    const first = s.index.file(Buffer.from(oid, 'hex'))!.chunks[0];
    return { ...s.index.chunk(first.id)!, packs: s.packsDir };
  });
  const packFile = packPath(loc.packs, loc.pack);
  const fd = openSync(packFile, 'r+');
  const b = Buffer.alloc(1);
  const at = loc.offset + (loc.length >> 1);
  readSync(fd, b, 0, 1, at);
  writeSync(fd, Buffer.from([b[0] ^ 0x10]), 0, 1, at);
  closeSync(fd);
  const before = storeState(ws);
  let err: MstoreError | undefined;
  await run(ws).catch((e: MstoreError) => (err = e));
  assert.ok(err instanceof MstoreError && err.code === 'ECORRUPT', `refused: ${err?.message}`);
  assert.match(err!.message, `consolidate failed at step 'merge', nothing committed: v001:${shard}: chunk `);
  assert.match(err!.message, 'is damaged');
  assert.is(storeState(ws), before);
});

function mkdirp(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

test.run();
