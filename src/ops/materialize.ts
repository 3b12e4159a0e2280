/**
 * `materialize REV`: stores the bytes of a version's content that the store keeps as recipes
 * (docs/format.md §18), for a store about to lose a base model or for users who prefer bytes.
 * Each file is rebuilt from its recipe straight into the object sink (chunked as a commit
 * chunks it) and hashed; its manifest is written only after the bytes hashed to the file's id,
 * and recorded in the same index transaction that drops the recipe row. A kill leaves the
 * recipe in place (an unindexed pack at most, which the next writer indexes). gc then frees
 * what only the recipe needed.
 */
import os from 'node:os';
import { MstoreError } from '../lib/errors.js';
import { parseSafetensorsHeader } from '../format/safetensors.js';
import { parseRecipe, recipeInputs } from '../format/recipe.js';
import { ContentWriter } from '../repo/content.js';
import type { Store } from '../repo/store.js';
import { resolveRev } from '../repo/versions.js';
import { listVersionFiles } from '../repo/version-files.js';
import { mergedHead, WeightMerger } from '../merge/merge.js';
import { LastOpened, openReader, rebuild, recipeFile } from './recipe.js';

export interface MaterializeResult {
  commit: string;
  /** The files whose bytes were stored (paths in the version). */
  files: string[];
  bytes: number;
  /** New chunk bytes the store grew by. */
  newBytes: number;
}

export async function materialize(store: Store, rev: string, opts: { onProgress?: (p: { done: number; total: number }) => void } = {}): Promise<MaterializeResult> {
  return store.withLock('materialize', async () => {
    const commit = await resolveRev(store.repo, rev);
    const todo = new Map<string, { display: string; path: string; size: number; record: Buffer }>();
    for (const f of await listVersionFiles(store.repo, commit)) {
      if (f.kind !== 'lfs' || todo.has(f.oid)) continue;
      const key = Buffer.from(f.oid, 'hex');
      if (store.index.hasFile(key)) continue;
      const record = store.index.recipe(key);
      if (!record) throw new MstoreError('EMISSING', `${rev}:${f.path}: content ${f.oid} is not in the store`);
      todo.set(f.oid, { display: `${rev}:${f.path}`, path: f.path, size: f.size, record });
    }
    return { commit, files: [...todo.values()].map((t) => t.path), ...(await storeBytes(store, todo, opts.onProgress)) };
  });
}

/**
 * Makes sure every file `record` (a recipe received) reads is held in chunks: an input this store
 * holds only as a recipe (a merged model merged again, whose bytes the sender keeps) is rebuilt
 * here and stored as bytes, so recipes never read recipes. The caller holds the writer lock.
 */
export async function inputsInChunks(store: Store, record: Buffer, display: string): Promise<void> {
  const todo = new Map<string, { display: string; size: number; record: Buffer }>();
  for (const i of recipeInputs(parseRecipe(record, `${display} (its recipe)`))) {
    const key = Buffer.from(i.oid, 'hex');
    const held = store.index.heldAsRecipe(key);
    if (held) todo.set(i.oid, { display: `${display} (its recipe's input ${i.name})`, size: i.size, record: held });
  }
  await storeBytes(store, todo);
}

/**
 * Rebuilds each recipe of `todo` (by oid) straight into the object sink, chunked as a commit
 * chunks it, its manifest written only once the bytes hashed to the oid; all recorded in one
 * publish, which drops the recipe rows. The caller holds the writer lock.
 */
async function storeBytes(store: Store, todo: Map<string, { display: string; size: number; record: Buffer }>, onProgress?: (p: { done: number; total: number }) => void): Promise<{ bytes: number; newBytes: number }> {
  const out = { bytes: 0, newBytes: 0 };
  if (!todo.size) return out;
  const total = [...todo.values()].reduce((a, t) => a + t.size, 0);
  const reader = openReader(store);
  const merger = new WeightMerger({ threads: Math.max(1, os.availableParallelism()) });
  const writer = new ContentWriter(store.sink(), store.hasher, store.config.chunking);
  try {
    const opened = new LastOpened();
    for (const [oid, t] of todo) {
      const recipe = parseRecipe(t.record, `${t.display} (its recipe)`);
      const inputs = await opened.get(reader, merger, recipe, t.display);
      const { head, size } = mergedHead(recipeFile(inputs, recipe, t.display));
      const stream = writer.stream(size, t.display, parseSafetensorsHeader(head.subarray(0, 8), head.subarray(8), size), (n) => onProgress?.({ done: (out.bytes += n), total }), { replaceRecipe: true });
      // The rebuild resolves only once the bytes hashed to oid; only then is the manifest written.
      await rebuild(reader, merger, recipe, oid, t.display, stream, inputs);
      const stored = await stream.end();
      if (stored.oid !== oid) throw new MstoreError('ECORRUPT', `${t.display}: stored as ${stored.oid}, expected ${oid}`);
    }
    await writer.finish();
    out.newBytes = writer.newBytes;
    return out;
  } catch (e) {
    await writer.abort();
    throw e;
  } finally {
    await merger.close();
    await reader.close();
  }
}
