/**
 * Taking in recipes that arrived from elsewhere (a push received, a pull, a copy, a bundle): the
 * one way a receiver records them. The files each reads are in chunks first (one held here only as
 * a recipe is rebuilt into bytes: recipes never read recipes); then each is proven by rebuilding
 * it from this store and hashing it to its id (one rebuilder for all, so the shards of one merged
 * model open their shared inputs once); only then is it handed to the sink, which records it at
 * its next publish.
 */
import type { ObjectSink } from '../repo/object-sink.js';
import type { Store } from '../repo/store.js';
import { ContentReader } from '../repo/content-reader.js';
import { RecipeRebuilder } from './recipe.js';
import { inputsInChunks } from './materialize.js';

export interface ArrivedRecipe {
  oid: string;
  record: Buffer;
  /** Names it in errors. */
  display: string;
}

/**
 * Proves and hands to `sink` every recipe of `arrived` whose content the store lacks; returns the
 * oids proven. The files they read must be published already. `locked` runs what writes bytes
 * into the store under the writer lock (a staged sink's caller does not hold it; others do).
 */
export async function takeRecipes(store: Store, sink: ObjectSink, arrived: ArrivedRecipe[], locked: <T>(fn: () => Promise<T>) => Promise<T> = (fn) => fn()): Promise<string[]> {
  const todo = arrived.filter((r) => !sink.hasFile(Buffer.from(r.oid, 'hex')));
  if (!todo.length) return [];
  await locked(async () => {
    for (const r of todo) await inputsInChunks(store, r.record, r.display);
  });
  const rebuilder = new RecipeRebuilder();
  const reader = new ContentReader(store.index, store.hasher, store.packsDir, rebuilder);
  try {
    for (const r of todo) await rebuilder.rebuild(reader, r.oid, r.record, r.display, () => undefined);
  } finally {
    await reader.close();
  }
  for (const r of todo) await sink.addRecipe(Buffer.from(r.oid, 'hex'), r.record, r.display);
  return todo.map((r) => r.oid);
}
