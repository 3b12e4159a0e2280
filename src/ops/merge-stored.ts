/**
 * The built-in merge of a stored adapter into a stored base, from the store into the store:
 * the merge (merge/) reads both versions' files straight from their chunks (VersionDir,
 * verified as read), and writes each merged weight file straight into the object sink
 * (ContentWriter.stream), chunked and hashed as it is produced. Nothing is materialised: no
 * scratch copy of the base, the adapter or the output (issue 19; consolidate.ts calls this
 * for its default hook's built-in worker).
 *
 * The output is the merged model directory as merge-lora would write it, as tree entries: the
 * merged weight files, the base directory's other files as they are stored (their git blobs
 * are reused; nothing is copied), a config.json the merge adjusts as new content, and stale
 * weights in other formats left out (merge.ts: otherFiles).
 */
import os from 'node:os';
import { parseSafetensorsHeader } from '../format/safetensors.js';
import { renderPointer } from '../format/pointer.js';
import { ContentWriter } from '../repo/content.js';
import { identifyBytes } from '../repo/identify.js';
import type { FlatTree } from '../repo/git.js';
import type { Store } from '../repo/store.js';
import { openBaseModel } from '../merge/base-model.js';
import { MERGE_KERNEL } from '../merge/kernel.js';
import { WeightMerger, mergedHead, otherFiles, planAdapterIn } from '../merge/merge.js';
import { StoredSource, type VersionDir } from './stored-source.js';
import { openRecipe, recipesOf } from './recipe.js';
import { encodeRecipe, type Recipe } from '../format/recipe.js';
import type { ContentReader } from '../repo/content-reader.js';
import { createHash } from 'node:crypto';

export interface StoredMerge {
  /** The merged model directory's files, at its root. */
  flat: FlatTree;
  /** The git blobs `flat` names that are new (pointers, an adjusted config). */
  gitBlobs: Map<string, Buffer>;
  totalBytes: number;
  /** Bytes of new chunk data the merge added to the store. */
  newBytes: number;
  kernel: string;
  threads: number;
  weightFiles: string[];
  /** The recipe of each merged weight file, by its content id (none when an input is not in chunks). */
  recipes: Map<string, Recipe>;
  /** How many merged weight files the store holds as recipes (`keep: 'recipe'`), not as bytes. */
  keptAsRecipes: number;
  skipped: string[];
  configChanges: string[];
}

export interface StoredMergeOptions {
  /** Kernel threads (default: every core). */
  threads?: number;
  /** Bytes of merged output written so far, of `total`. */
  onProgress?: (done: number, total: number) => void;
  /** A path in the base directory to leave out (the adapter's, when it lies inside the base's). */
  exclude?: string;
  /**
   * 'recipe': each merged weight file whose inputs are in chunks is kept as its recipe (docs/format.md
   * §18), made by merging from the recipe itself, so what is kept is what a rebuild makes;
   * 'bytes' (default): every merged file is stored in chunks.
   */
  keep?: 'recipe' | 'bytes';
}

/**
 * Merges `adapter` into `base` (both directories of stored versions) and stores the result's
 * content. Before it returns, every stored file the merge read, and every file of `prove`, is
 * proven whole (VersionDir.proveWhole); on any failure nothing it wrote is recorded.
 */
export async function mergeStored(store: Store, reader: ContentReader, base: VersionDir, adapter: VersionDir, prove: { base: string[]; adapter: string[] }, opts: StoredMergeOptions = {}): Promise<StoredMerge> {
  const threads = opts.threads ?? Math.max(1, os.availableParallelism());
  const merger = new WeightMerger({ threads });
  const sink = store.sink();
  const writer = new ContentWriter(sink, store.hasher, store.config.chunking);
  try {
    const model = await openBaseModel(base);
    const plan = await planAdapterIn(adapter, model, merger.pool);
    const recipeOf = await recipesOf(model, plan, base, adapter, (oid) => store.index.hasFile(Buffer.from(oid, 'hex')));
    // Every merged file shares the recipe's inputs: they are opened once, proven whole at the end.
    const first = recipeOf.values().next().value;
    const fromRecipe = opts.keep === 'recipe' && first ? await openRecipe(reader, merger, first, 'the merged model', true) : undefined;
    const recipes = new Map<string, Recipe>();
    const flat: FlatTree = new Map();
    const gitBlobs = new Map<string, Buffer>();
    let totalBytes = 0;
    /** Merged files held as recipes (made so now, or already held so). */
    let kept = 0;
    const total = model.files.reduce((s, f) => s + mergedHead(f).size, 0);
    let done = 0;
    for (const f of model.files) {
      const { head, size } = mergedHead(f);
      const recipe = recipeOf.get(f.name);
      const made = fromRecipe?.model.files.find((x) => x.name === f.name);
      let r: { oid: string };
      if (recipe && fromRecipe && made) {
        // Kept as its recipe: the bytes are only hashed, made from the recipe's inputs.
        const hash = createHash('sha256');
        await merger.write(made, { write: async (b) => void hash.update(b) }, fromRecipe.plan, fromRecipe.model, (n) => opts.onProgress?.((done += n), total));
        r = { oid: hash.digest('hex') };
        const before = sink.newRecipes;
        await sink.addRecipe(Buffer.from(r.oid, 'hex'), encodeRecipe(recipe), `${f.name} (merged)`);
        if (sink.newRecipes > before || store.index.hasRecipe(Buffer.from(r.oid, 'hex'))) kept++;
        if (made.source instanceof StoredSource) await made.source.proveWhole();
      } else {
        // The chunk plan is the output's own header: the base's, padded (mergedHead).
        const header = parseSafetensorsHeader(head.subarray(0, 8), head.subarray(8), size);
        // Bytes asked for (--store-bytes) replace a recipe an earlier consolidation kept for the same content.
        const out = writer.stream(size, `${f.name} (merged)`, header, undefined, { replaceRecipe: opts.keep === 'bytes' });
        await merger.write(f, out, plan, model, (n) => opts.onProgress?.((done += n), total));
        r = await out.end();
      }
      // Proven now, not at the end, and its cached chunk let go: memory stays one chunk per file read.
      if (f.source instanceof StoredSource) {
        await f.source.proveWhole();
        await f.source.close();
      }
      if (recipe) recipes.set(r.oid, recipe);
      const pointer = Buffer.from(renderPointer({ oid: r.oid, size }));
      const blob = await store.repo.hashBlob(pointer);
      flat.set(f.name, { mode: '100644', blob });
      gitBlobs.set(blob, pointer);
      totalBytes += size;
    }
    const configChanges: string[] = [];
    const others = await otherFiles(base, model, plan, configChanges, opts.exclude);
    const deref = new Set(others.dereferenced);
    for (const rel of others.copied) {
      // A link that names a file outside the directory is recorded as that file (merge.ts: otherFiles).
      const kept = deref.has(rel) || (rel === 'config.json' && others.config !== undefined) ? await base.fileThrough(rel) : base.file(rel);
      if (rel === 'config.json' && others.config !== undefined) {
        const id = await identifyBytes(store.repo, rel, Buffer.from(others.config), store.config.textMaxBytes, writer);
        flat.set(rel, { mode: kept.mode, blob: id.blob });
        gitBlobs.set(id.blob, id.gitContent);
        totalBytes += id.size;
      } else {
        flat.set(rel, { mode: kept.mode, blob: kept.blob });
        totalBytes += kept.size;
      }
    }
    await fromRecipe?.dirs.base.proveWhole();
    await fromRecipe?.dirs.adapter.proveWhole();
    await base.proveWhole(prove.base);
    await adapter.proveWhole(prove.adapter);
    await writer.finish();
    return {
      flat,
      gitBlobs,
      totalBytes,
      newBytes: writer.newBytes,
      kernel: MERGE_KERNEL,
      threads,
      weightFiles: model.files.map((f) => f.name),
      recipes,
      keptAsRecipes: kept,
      skipped: others.skipped,
      configChanges,
    };
  } catch (e) {
    await writer.abort();
    throw e;
  } finally {
    await merger.close();
  }
}
