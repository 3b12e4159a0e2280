/**
 * Issue 19, the edges of content kept as recipes (a review's findings, each a test that fails
 * without its fix):
 * - two shards kept as recipes, each larger than the rebuild's read-ahead, read at once by one
 *   reader (a tensor diff): every byte as the bytes-kept version has it;
 * - a whole-file read of a recipe whose rebuild does not hash to its id never yields the last byte;
 * - gc keeps the inputs of a recipe row it keeps for being young, though no version needs them;
 * - a receiver that holds an input of a recipe only as a recipe itself rebuilds that input first.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cleanup, mstore, mstoreJson, mstoreOk, tmpDir, writeF32 } from './helpers.js';
import { withStoreAt } from './in-process.js';
import { listVersionFiles } from '../src/repo/version-files.js';
import { resolveRev } from '../src/repo/versions.js';
import { openReader } from '../src/ops/recipe.js';
import { gc } from '../src/ops/retention/gc.js';
import { parseRecipe, recipeInputs } from '../src/format/recipe.js';

const root = tmpDir('mstore-recipe-edges-');
test.after(() => cleanup(root));

const ok = mstoreOk;

const LAYERS = 4;
const names = Array.from({ length: LAYERS }, (_, i) => `model.layers.${i}.mlp.up_proj`);

/** A base of two 8 MiB F32 shards (two 1024x1024 tensors each), and a rank-4 adapter on every tensor. */
function bigCase(dir: string, seed: number): { base: string; adapter: string } {
  const base = path.join(dir, 'base');
  const adapter = path.join(dir, 'adapter');
  mkdirSync(base, { recursive: true });
  mkdirSync(adapter, { recursive: true });
  const weightMap: Record<string, string> = {};
  for (const s of [0, 1]) {
    const file = `model-0000${s + 1}-of-00002.safetensors`;
    const mine = names.slice(s * 2, s * 2 + 2);
    writeF32(path.join(base, file), mine.map((m, k): [string, number[], (i: number) => number] => [`${m}.weight`, [1024, 1024], (i) => Math.sin(i * 0.001 + k + seed)]));
    for (const m of mine) weightMap[`${m}.weight`] = file;
  }
  writeFileSync(path.join(base, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  writeFileSync(path.join(base, 'config.json'), JSON.stringify({ model_type: 'test' }));
  writeF32(
    path.join(adapter, 'adapter_model.safetensors'),
    names.flatMap((m, k): [string, number[], (i: number) => number][] => [
      [`base_model.model.${m}.lora_A.weight`, [4, 1024], (i) => Math.cos(i + k + seed) * 0.01],
      [`base_model.model.${m}.lora_B.weight`, [1024, 4], (i) => Math.sin(i + k + seed) * 0.01],
    ]),
  );
  writeFileSync(path.join(adapter, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['up_proj'] }));
  return { base, adapter };
}

/** A store holding the case as bases/v001 and adapters/v001, consolidated into merged/v001 (`keep`: extra arguments). */
function storeWith(name: string, c: { base: string; adapter: string }, keep: string[]): string {
  const ws = path.join(root, name);
  mkdirSync(ws);
  ok(ws, ['init']);
  for (const [dir, line] of [[c.base, 'bases'], [c.adapter, 'adapters']] as const) {
    cpSync(dir, path.join(ws, path.basename(dir)), { recursive: true });
    ok(ws, ['commit', '-m', line, '--line', line, path.basename(dir)]);
  }
  ok(ws, ['consolidate', '--base', 'bases/v001', '--adapter', 'adapters/v001', '--worker', 'builtin', ...keep]);
  return ws;
}

test('two shards kept as recipes, each past the read-ahead, read at once by one reader: every tensor as the bytes-kept version has it', async () => {
  const c = bigCase(path.join(root, 'big'), 1);
  const asRecipes = storeWith('big-r', c, []);
  const asBytes = storeWith('big-b', c, ['--store-bytes']);
  assert.is(mstoreJson<{ index: { recipes: number } }>(asRecipes, ['fsck']).index.recipes, 2);
  const want = await withStoreAt(asBytes, async (s) => {
    const files = (await listVersionFiles(s.repo, await resolveRev(s.repo, 'merged/v001'))).filter((f) => f.kind === 'lfs');
    const r = openReader(s);
    try {
      return await Promise.all(files.map(async (f) => ({ f, bytes: await r.readRange(f.oid, 0, f.size) })));
    } finally {
      await r.close();
    }
  });
  await withStoreAt(asRecipes, async (s) => {
    const r = openReader(s);
    try {
      // Interleaved ranges of both shards (a header each, then tensors alternately), as a diff reads.
      const [a, b] = want;
      for (const [w, at, len] of [[a, 0, 8], [b, 0, 8], [a, 4096, 3_000_000], [b, 4096, 3_000_000], [a, 5_000_000, 3_000_000], [b, 6_000_000, 2_000_000]] as const) {
        const got = await r.readRange(w.f.oid, at, len);
        assert.ok(got.equals(w.bytes.subarray(at, at + len)), `${w.f.path} bytes ${at}+${len}`);
      }
      // And both whole at once, each its own rebuild on the reader's one merger.
      const both = await Promise.all(want.map(async (w) => Buffer.concat(await collect(r.slices(w.f.oid, 0, w.f.size)))));
      for (let i = 0; i < both.length; i++) assert.ok(both[i].equals(want[i].bytes), `${want[i].f.path} whole`);
    } finally {
      await r.close();
    }
  });
});

async function collect(g: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const b of g) out.push(b);
  return out;
}

test('a whole-file read of a recipe whose rebuild does not hash to its id stops before its last byte', async () => {
  const ws = path.join(root, 'big-r');
  await withStoreAt(ws, async (s) => {
    const f = (await listVersionFiles(s.repo, await resolveRev(s.repo, 'merged/v001'))).find((x) => x.path === 'model-00001-of-00002.safetensors')!;
    const record = s.index.recipe(Buffer.from(f.oid, 'hex'))!;
    // The same record under another id: a sound recipe that makes other bytes than its id says.
    const liar = 'ab'.repeat(32);
    await s.withLock('test', async () => {
      const sink = s.sink();
      await sink.addRecipe(Buffer.from(liar, 'hex'), record, 'liar');
      await sink.publish();
    });
    const r = openReader(s);
    let got = 0;
    let err: Error | undefined;
    try {
      for await (const b of r.slices(liar, 0, f.size, 'liar')) got += b.length;
    } catch (e) {
      err = e as Error;
    } finally {
      await r.close();
    }
    assert.match(err?.message ?? '', /hashes to .*expected abab/);
    assert.ok(got < f.size, `${got} of ${f.size} bytes yielded`);
  });
});

test("gc keeps the inputs of a recipe row it keeps for being young, though no version needs them", async () => {
  const ws = path.join(root, 'big-r');
  const saved = process.env.MSTORE_NOW;
  try {
    // Everything but the recipe rows is old and unneeded: the versions go, time passes.
    ok(ws, ['rm', 'merged/v001', 'bases/v001', 'adapters/v001', '--confirm', '--no-backup']);
    const inputs = await withStoreAt(ws, async (s) => {
      const [, record] = [...s.index.recipeRows()][0];
      return recipeInputs(parseRecipe(record, 'test')).map((i) => i.oid);
    });
    process.env.MSTORE_NOW = new Date(Date.now() + 30 * 86_400_000).toISOString();
    // A new recipe row (the liar's, above, in a pack of its own) is young against a grace of 1 h: it stays, its inputs too.
    await withStoreAt(ws, async (s) => {
      const f = [...s.index.recipeRows()].find(([k]) => k.toString('hex') !== 'ab'.repeat(32))!;
      const young = 'cd'.repeat(32);
      await s.withLock('test', async () => {
        const sink = s.sink();
        await sink.addRecipe(Buffer.from(young, 'hex'), f[1], 'young');
        await sink.publish();
      });
      await gc(s, { graceMs: 3_600_000 });
      assert.ok(s.index.hasRecipe(Buffer.from(young, 'hex')), 'the young recipe row is kept');
      for (const i of inputs) assert.ok(s.index.hasFile(Buffer.from(i, 'hex')), `its input ${i} is kept`);
    });
    assert.ok(mstoreJson<{ ok: boolean }>(ws, ['fsck']).ok);
  } finally {
    if (saved === undefined) delete process.env.MSTORE_NOW;
    else process.env.MSTORE_NOW = saved;
  }
});

test('a receiver holding an input of a recipe only as a recipe rebuilds it into bytes, then proves and keeps the new recipe', async () => {
  // merged/v001 from base and adapter; merged/v002 from merged/v001 (materialized here) and the adapter again.
  const c = bigCase(path.join(root, 'chain-case'), 2);
  const ws = storeWith('chain', c, []);
  const remote = path.join(root, 'chain-remote');
  ok(root, ['init', '--bare', remote]);
  ok(ws, ['push', remote, 'bases/v001', 'adapters/v001', 'merged/v001']);
  ok(ws, ['materialize', 'merged/v001']);
  ok(ws, ['consolidate', '--base', 'merged/v001', '--adapter', 'adapters/v001', '--worker', 'builtin']);
  assert.is(mstoreJson<{ index: { recipes: number } }>(remote, ['fsck']).index.recipes, 2, 'the remote holds merged/v001 as recipes');
  const p = mstore(ws, ['push', remote, 'merged/v002', '--json']);
  assert.is(p.code, 0, p.stderr);
  ok(remote, ['checkout', 'merged/v002', '--to', path.join(root, 'chain-co')]);
  assert.ok(mstoreJson<{ ok: boolean }>(remote, ['verify', '--all']).ok);
  const f = mstoreJson<{ ok: boolean; index: { recipes: number } }>(remote, ['fsck']);
  assert.ok(f.ok);
  assert.is(f.index.recipes, 2, "merged/v001's bytes rebuilt there, merged/v002 kept as recipes");
});

test.run();
