/**
 * Indexing packs from their own tables (restic's rule: the index is derived data). Used
 * after a crashed writer, whose sealed but unpublished packs would otherwise be stored
 * again by the next commit, and by a full index rebuild.
 */
import { readdir, open, stat } from 'node:fs/promises';
import path from 'node:path';
import { ENTRY_FILE, ENTRY_RECIPE, packPath, readPackTable, type PackInfo } from './pack.js';
import { MANIFEST_RECORD, type NewFile, type NewRecipe, type StoreIndex } from './index-db.js';
import { parseRecipe } from '../format/recipe.js';

/** What indexing needs of a store (the Store handle, which runs it after a crash, is one). */
export interface PackStore {
  index: StoreIndex;
  packsDir: string;
  /** Makes the store's format one that holds recipes (store.ts), before a recipe is recorded. */
  allowRecipes(): Promise<void>;
}

/** Every pack id present on disk. */
export async function listPackFiles(packsDir: string): Promise<string[]> {
  const ids: string[] = [];
  for (const sub of await readdir(packsDir).catch(() => [] as string[])) {
    if (!/^[0-9a-f]{2}$/.test(sub)) continue;
    for (const name of await readdir(path.join(packsDir, sub))) {
      const m = /^([0-9a-f]{64})\.pack$/.exec(name);
      if (m && m[1].startsWith(sub)) ids.push(m[1]);
    }
  }
  return ids.sort();
}

export interface ReindexResult {
  indexed: string[];
  /** Packs whose table could not be read: left alone, reported. */
  damaged: { pack: string; error: string }[];
}

/** Adds the given packs (or every pack the index lacks) to the index. Caller holds the lock. */
export async function indexPacks(store: PackStore, ids?: string[]): Promise<ReindexResult> {
  const known = new Set(store.index.packIds());
  const todo = (ids ?? (await listPackFiles(store.packsDir))).filter((id) => !known.has(id));
  const packs: PackInfo[] = [];
  const files: NewFile[] = [];
  const recipes: NewRecipe[] = [];
  const damaged: ReindexResult['damaged'] = [];
  for (const id of todo) {
    try {
      const entries = await readPackTable(store.packsDir, id);
      const fh = await open(packPath(store.packsDir, id), 'r');
      try {
        for (const e of entries) {
          if (e.type === ENTRY_RECIPE) {
            const record = Buffer.alloc(e.length);
            await fh.read(record, 0, e.length, e.offset);
            parseRecipe(record, `recipe ${e.id.toString('hex')}`);
            recipes.push({ oid: e.id, record });
          }
          if (e.type !== ENTRY_FILE) continue;
          const manifest = Buffer.alloc(e.length);
          await fh.read(manifest, 0, e.length, e.offset);
          if (manifest.length % MANIFEST_RECORD !== 0) throw new Error(`file manifest ${e.id.toString('hex')} has a bad length`);
          let size = 0;
          for (let o = 32; o < manifest.length; o += MANIFEST_RECORD) size += manifest.readUInt32LE(o);
          files.push({ oid: e.id, size, manifest });
        }
      } finally {
        await fh.close();
      }
      const { size } = await stat(packPath(store.packsDir, id));
      packs.push({ id, size, entries });
    } catch (e) {
      damaged.push({ pack: id, error: (e as Error).message });
    }
  }
  // A recipe found in a pack makes the store mstore/2 (a writer killed before its bump sealed it).
  if (recipes.length) await store.allowRecipes();
  // A recipe whose inputs are gone (gc freed them after a writer died) is left out; gc drops its entry.
  if (packs.length) store.index.recordPacks(packs, { files, recipes, orphans: 'skip' });
  return { indexed: packs.map((p) => p.id), damaged };
}
