/**
 * Recipes (issue 19; format/recipe.ts, ops/recipe.ts): the record of how the built-in merge made
 * a merged weight file has one byte form, and parsing refuses anything else; a consolidation's
 * recipes rebuild every merged weight file from the store bit for bit (sharded PEFT with a
 * replaced lm_head; kohya); a recipe of another kernel version, a changed input, a damaged input
 * chunk are each refused, and the check that says "rebuilt" can fail.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { mkdirSync, openSync, readSync, renameSync, symlinkSync, writeSync, closeSync } from 'node:fs';
import path from 'node:path';
import { cleanup, tmpDir } from './helpers.js';
import { withStoreAt } from './in-process.js';
import { caseA, caseE, resetSeeds, storeCase } from './merge-cases.js';
import { encodeRecipe, parseRecipe, type Recipe } from '../src/format/recipe.js';
import { openRecipe, rebuild } from '../src/ops/recipe.js';
import { mergeStored } from '../src/ops/merge-stored.js';
import { VersionDir } from '../src/ops/stored-source.js';
import { ContentReader } from '../src/repo/content-reader.js';
import { listVersionFiles } from '../src/repo/version-files.js';
import { resolveRev } from '../src/repo/versions.js';
import { packPath } from '../src/repo/pack.js';
import { WeightMerger } from '../src/merge/merge.js';
import { MstoreError } from '../src/lib/errors.js';
import type { Store } from '../src/repo/store.js';

const root = tmpDir('mstore-recipe-');
test.after(() => cleanup(root));

const OID = 'ab'.repeat(32);
const sample: Recipe = {
  schema: 'mstore.recipe/1',
  kernel: 'mstore-merge/1',
  file: 'model-00001-of-00002.safetensors',
  size: 1234,
  base: {
    files: [
      { name: 'model-00001-of-00002.safetensors', oid: OID, size: 1234 },
      { name: 'model-00002-of-00002.safetensors', oid: 'cd'.repeat(32), size: 99 },
    ],
    index: '{"weight_map": {}}',
  },
  adapter: { format: 'peft', config: '{"r": 8}', weights: { name: 'adapter_model.safetensors', oid: 'ef'.repeat(32), size: 10 } },
};

function refused(bytes: string | Buffer, why: RegExp | string): void {
  let e: MstoreError | undefined;
  try {
    parseRecipe(Buffer.from(bytes), 'v001:model.safetensors');
  } catch (x) {
    e = x as MstoreError;
  }
  assert.ok(e instanceof MstoreError && e.code === 'ECORRUPT', `refused: ${String(bytes).slice(0, 80)}`);
  assert.match(e!.message, /^v001:model\.safetensors: recipe /);
  assert.match(e!.message, why);
}

test('a recipe has one byte form: it round-trips, and any other form or a bad field is refused naming it', () => {
  const bytes = encodeRecipe(sample);
  assert.equal(parseRecipe(bytes, 'x'), sample);
  const kohya: Recipe = { ...sample, base: { ...sample.base, index: null }, adapter: { format: 'kohya', weights: { name: 'style.safetensors', oid: OID, size: 5 } } };
  assert.equal(parseRecipe(encodeRecipe(kohya), 'x'), kohya);
  // A kernel this mstore does not implement still parses: the rebuild names what it needs.
  assert.is(parseRecipe(encodeRecipe({ ...sample, kernel: 'mstore-merge/2' }), 'x').kernel, 'mstore-merge/2');
  const json = JSON.parse(bytes.toString()) as Record<string, unknown>;
  refused(`${JSON.stringify(json, null, 1)}\n`, 'canonical');
  refused(JSON.stringify(json), 'canonical');
  refused(`${JSON.stringify({ kernel: json.kernel, schema: json.schema, file: json.file, size: json.size, base: json.base, adapter: json.adapter })}\n`, 'canonical');
  refused(`${JSON.stringify({ ...json, extra: 1 })}\n`, 'keys');
  refused(`${JSON.stringify({ ...json, schema: 'mstore.recipe/2' })}\n`, 'schema');
  refused(`${JSON.stringify({ ...json, kernel: 'torch' })}\n`, 'kernel');
  refused(`${JSON.stringify({ ...json, file: 'other.safetensors' })}\n`, 'not one of base.files');
  refused(`${JSON.stringify({ ...json, file: '../x' })}\n`, 'not a file name');
  refused(`${JSON.stringify({ ...json, size: -1 })}\n`, 'size');
  refused(`${JSON.stringify({ ...json, base: { files: [{ name: 'a/b', oid: OID, size: 1 }], index: null } })}\n`, 'base.files[0].name');
  refused(`${JSON.stringify({ ...json, base: { files: [{ name: json.file, oid: 'AB'.repeat(32), size: 1 }], index: null } })}\n`, 'base.files[0].oid');
  refused(`${JSON.stringify({ ...json, adapter: { format: 'lycoris', weights: {} } })}\n`, 'adapter.format');
  const adapter = json.adapter as { weights: Record<string, unknown> };
  refused(`${JSON.stringify({ ...json, adapter: { ...adapter, weights: { ...adapter.weights, name: 'other.safetensors' } } })}\n`, 'adapter.weights.name');
  refused(Buffer.from([0xff, 0xfe]), 'UTF-8');
});

/** Runs the in-process merge of a committed case; `fn` gets its recipes and a reader of the store. */
async function withRecipes(ws: string, fn: (s: Store, reader: ContentReader, recipes: Map<string, Recipe>) => Promise<void>): Promise<void> {
  await withStoreAt(ws, async (s) => {
    const reader = new ContentReader(s.index, s.hasher, s.packsDir);
    try {
      const dir = async (rev: string, label: string, d: string): Promise<VersionDir> => new VersionDir(s.repo, reader, label, d, await listVersionFiles(s.repo, await resolveRev(s.repo, rev)));
      const m = await mergeStored(s, reader, await dir('v001', 'v001', 'base'), await dir('adapters/v001', 'adapters/v001', 'adapter'), { base: [], adapter: [] });
      assert.is(m.recipes.size, m.weightFiles.length, 'a recipe for every merged weight file');
      await fn(s, reader, m.recipes);
    } finally {
      await reader.close();
    }
  });
}

/** The bytes of rebuilding `oid` from `recipe` (throws what the rebuild throws). */
async function rebuilt(reader: ContentReader, recipe: Recipe, oid: string): Promise<Buffer> {
  const merger = new WeightMerger({ threads: 2 });
  const parts: Buffer[] = [];
  try {
    await rebuild(reader, merger, recipe, oid, `merged:${recipe.file}`, { write: async (b) => void parts.push(Buffer.from(b)) });
  } finally {
    await merger.close();
  }
  return Buffer.concat(parts);
}

async function storedBytes(reader: ContentReader, oid: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  await reader.read(oid, oid, (d) => parts.push(Buffer.from(d)));
  return Buffer.concat(parts);
}

test("a consolidation's recipes rebuild each merged weight file bit for bit (sharded PEFT, kohya, a linked base file)", async () => {
  resetSeeds();
  const cases = path.join(root, 'cases');
  mkdirSync(cases);
  const a = caseA(cases);
  const e = caseE(cases);
  // E-link: the base's weights file is a symlink into blobs/ (a Hugging Face snapshot): the recipe names the content read.
  const linked = (dir: string): void => {
    mkdirSync(path.join(dir, 'blobs'));
    renameSync(path.join(dir, 'model.safetensors'), path.join(dir, 'blobs', 'f00d'));
    symlinkSync('blobs/f00d', path.join(dir, 'model.safetensors'));
  };
  for (const [name, c, extras] of [['A', a, undefined], ['E', e, undefined], ['E-link', e, linked]] as const) {
    await withRecipes(storeCase(path.join(root, name), c.base, c.adapter, extras), async (_s, reader, recipes) => {
      for (const [oid, recipe] of recipes) {
        assert.equal(parseRecipe(encodeRecipe(recipe), 'x'), recipe);
        const bytes = await rebuilt(reader, recipe, oid);
        assert.is(createHash('sha256').update(bytes).digest('hex'), oid, `${name}: ${recipe.file}`);
        assert.ok(bytes.equals(await storedBytes(reader, oid)));
      }
    });
  }
});

test('a rebuild refuses another kernel version (before reading anything), a changed input and a damaged input chunk', async () => {
  resetSeeds();
  const cases = path.join(root, 'cases-bad');
  mkdirSync(cases);
  const a = caseA(cases);
  const ws = storeCase(path.join(root, 'bad'), a.base, a.adapter);
  await withRecipes(ws, async (s, reader, recipes) => {
    const [oid, recipe] = [...recipes][0];
    const failure = async (r: Recipe): Promise<MstoreError> => {
      let err: MstoreError | undefined;
      await rebuilt(reader, r, oid).catch((x: MstoreError) => (err = x));
      assert.ok(err instanceof MstoreError, 'refused');
      return err!;
    };
    let err = await failure({ ...recipe, kernel: 'mstore-merge/2' });
    assert.is(err.code, 'EBADINPUT');
    assert.match(err.message, `merged:${recipe.file} is rebuilt by merge kernel mstore-merge/2; this mstore implements mstore-merge/1 only`);
    // Another alpha: every input is sound, the bytes are not the file's.
    const config = recipe.adapter.format === 'peft' ? recipe.adapter.config.replace('"lora_alpha":16', '"lora_alpha":17') : '';
    assert.is.not(config, recipe.adapter.format === 'peft' ? recipe.adapter.config : '', 'the config changed');
    err = await failure({ ...recipe, adapter: { ...recipe.adapter, config } as Recipe['adapter'] });
    assert.is(err.code, 'ECORRUPT');
    assert.match(err.message, `merged:${recipe.file}: rebuilt from its recipe, it hashes to `);
    err = await failure({ ...recipe, size: recipe.size + 8 });
    assert.is(err.code, 'ECORRUPT');
    err = await failure({ ...recipe, base: { ...recipe.base, files: [...recipe.base.files].reverse() } });
    assert.is(err.code, 'ECORRUPT');
    assert.match(err.message, 'its recipe lists the base files model-00002-of-00002.safetensors, model-00001-of-00002.safetensors, its base model reads model-00001');
    err = await failure({ ...recipe, base: { ...recipe.base, index: null } });
    assert.is(err.code, 'ECORRUPT');
    assert.match(err.message, `merged:${recipe.file}: its recipe does not make a merge: `);
    /** Flips one byte of a pack. */
    const flip = (pack: string, at: number): void => {
      const fd = openSync(packPath(s.packsDir, pack), 'r+');
      const b = Buffer.alloc(1);
      readSync(fd, b, 0, 1, at);
      writeSync(fd, Buffer.from([b[0] ^ 1]), 0, 1, at);
      closeSync(fd);
    };
    // A flipped byte in the first chunk of the base's first shard.
    const shard = recipe.base.files[0];
    const first = s.index.file(Buffer.from(shard.oid, 'hex'))!.chunks[0];
    const loc = s.index.chunk(first.id)!;
    flip(loc.pack, loc.offset + 3);
    err = await failure(recipe);
    assert.is(err.code, 'ECORRUPT');
    assert.match(err.message, `merged:${recipe.file} (its recipe's base file ${shard.name}): chunk ${first.id.toString('hex')} in pack ${loc.pack} is damaged`);
    flip(loc.pack, loc.offset + 3);

    // A rebuild whose output its caller hashes (a checkout, on its hash worker) reads the file's
    // base chunks unchecked: damage to one (here after its inputs were opened, as a server's
    // reader holds them) is named once the output fails its hash.
    const own = recipe.base.files.find((f) => f.name === recipe.file)!;
    const chunks = s.index.file(Buffer.from(own.oid, 'hex'))!.chunks;
    const last = chunks[chunks.length - 1];
    const lastLoc = s.index.chunk(last.id)!;
    const display = `merged:${recipe.file}`;
    const merger = new WeightMerger({ threads: 2 });
    try {
      const inputs = await openRecipe(reader, merger, recipe, display, false);
      const hashed = async (): Promise<unknown> => {
        const h = createHash('sha256');
        const digest = async (): Promise<string> => h.digest('hex');
        return rebuild(reader, merger, recipe, oid, display, { write: async (b) => void h.update(b) }, inputs, digest).then(() => undefined, (x: unknown) => x);
      };
      assert.is(await hashed(), undefined, 'sound inputs rebuild');
      flip(lastLoc.pack, lastLoc.offset + last.length - 2);
      const e = (await hashed()) as MstoreError;
      assert.ok(e instanceof MstoreError, 'refused');
      assert.is(e.code, 'ECORRUPT');
      assert.match(e.message, `${display} (its recipe's base file ${own.name}): chunk ${last.id.toString('hex')} in pack ${lastLoc.pack} is damaged`);
    } finally {
      await merger.close();
    }
  });
});

test.run();
