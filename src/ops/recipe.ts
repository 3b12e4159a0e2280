/**
 * Recipes (format/recipe.ts, docs/format.md §18): the record of how the built-in merge made a
 * merged weight file, taken from a consolidation, and the rebuild of that file from the store,
 * verified against its content id. The rebuild runs the same code as the merge that made the
 * file (merge/, through StoredDirs over the recipe's inputs), with the arithmetic the recipe
 * names; a recipe that names another version of it is refused, never rebuilt with this one.
 */
import { createHash } from 'node:crypto';
import { MstoreError } from '../lib/errors.js';
import { PEFT_WEIGHTS, RECIPE_RECORD_MAX, RECIPE_SCHEMA, RECIPE_TEXT_MAX, encodeRecipe, parseRecipe, type Recipe, type RecipeInput } from '../format/recipe.js';
import os from 'node:os';
import { ContentReader, type Rebuilder } from '../repo/content-reader.js';
import type { Store } from '../repo/store.js';
import type { ParallelHasher } from '../lib/hashing.js';
import { INDEX_NAME, openBaseModel, type BaseModel } from '../merge/base-model.js';
import { MERGE_KERNEL } from '../merge/kernel.js';
import { mergedHead, planAdapterIn, WeightMerger } from '../merge/merge.js';
import type { AdapterPlan } from '../merge/plan.js';
import type { WeightOut } from '../merge/source.js';
import { StoredDir, StoredSource, type StoredEntry, type VersionDir } from './stored-source.js';

const ADAPTER_CONFIG = 'adapter_config.json';

/**
 * The recipe of each merged weight file of a merge from `base` and `adapter` (stored version
 * directories), by file name; none when an input is not in the store's chunks (`inChunks`: a
 * file kept as a git blob, or itself kept as a recipe), as a recipe reads content ids in chunks.
 */
export async function recipesOf(model: BaseModel, plan: AdapterPlan, base: VersionDir, adapter: VersionDir, inChunks: (oid: string) => boolean): Promise<Map<string, Recipe>> {
  const out = new Map<string, Recipe>();
  // The content the merge read, links followed (a recipe names its inputs by content).
  const stored = async (dir: VersionDir, rel: string): Promise<RecipeInput | undefined> => {
    const f = await dir.fileThrough(rel);
    return f.kind === 'lfs' && inChunks(f.oid) ? { name: rel, oid: f.oid, size: f.size } : undefined;
  };
  const files = await Promise.all(model.files.map((f) => stored(base, f.name)));
  // A kohya LoRA is the adapter directory's one .safetensors file (planAdapterIn).
  const kohya = (await adapter.list()).find((e) => !e.path.includes('/') && e.path.endsWith('.safetensors'));
  const weights = await stored(adapter, plan.format === 'peft' ? PEFT_WEIGHTS : kohya!.path);
  if (files.some((f) => !f) || !weights) return out;
  const index = model.index ? await base.text(INDEX_NAME) : null;
  const config = plan.format === 'peft' ? await adapter.text(ADAPTER_CONFIG) : '';
  // Texts a recipe cannot hold (format/recipe.ts): the merge is kept as bytes.
  if (Buffer.byteLength(index ?? '') > RECIPE_TEXT_MAX || Buffer.byteLength(config) > RECIPE_TEXT_MAX) return out;
  const adapterRecipe: Recipe['adapter'] = plan.format === 'peft' ? { format: 'peft', config, weights } : { format: 'kohya', weights };
  for (const f of model.files) {
    const r: Recipe = { schema: RECIPE_SCHEMA, kernel: MERGE_KERNEL, file: f.name, size: mergedHead(f).size, base: { files: files as RecipeInput[], index }, adapter: adapterRecipe };
    // A record that would not travel as one object (remote/wire.ts): the merge is kept as bytes.
    if (encodeRecipe(r).length > RECIPE_RECORD_MAX) return new Map();
    out.set(f.name, r);
  }
  return out;
}

/** A recipe's inputs as the merge's model directories: stored files by content id, texts inline. */
function recipeDirs(reader: ContentReader, recipe: Recipe, display: string, whole: boolean): { base: StoredDir; adapter: StoredDir } {
  const text = (t: string): StoredEntry => ({ kind: 'bytes', load: async () => Buffer.from(t) });
  const baseEntries = new Map<string, StoredEntry>(recipe.base.files.map((f) => [f.name, { kind: 'stored', oid: f.oid }]));
  if (recipe.base.index !== null) baseEntries.set(INDEX_NAME, text(recipe.base.index));
  const a = recipe.adapter;
  const adapterEntries = new Map<string, StoredEntry>([[a.format === 'peft' ? PEFT_WEIGHTS : a.weights.name, { kind: 'stored', oid: a.weights.oid }]]);
  if (a.format === 'peft') adapterEntries.set(ADAPTER_CONFIG, text(a.config));
  return {
    base: new StoredDir(reader, `${display} (its recipe's base)`, baseEntries, (rel) => `${display} (its recipe's base file ${rel})`, whole),
    adapter: new StoredDir(reader, `${display} (its recipe's adapter)`, adapterEntries, (rel) => `${display} (its recipe's adapter file ${rel})`, whole),
  };
}

/** A recipe opened for merging: its base model and adapter plan over its inputs (`dirs`). */
export interface OpenRecipe {
  model: BaseModel;
  plan: AdapterPlan;
  dirs: { base: StoredDir; adapter: StoredDir };
}

/**
 * Opens a recipe's inputs as the merge reads them, checking that they make the merge the record
 * says (kernel, file order, sizes). With `whole` every input file read can be proven whole after
 * (consolidate, which has no content id to check its output against); without, each chunk read
 * is re-hashed to its id and the caller hashes the output.
 */
export async function openInputs(reader: ContentReader, merger: WeightMerger, recipe: Recipe, display: string, whole: boolean): Promise<OpenRecipe> {
  if (recipe.kernel !== MERGE_KERNEL) {
    throw new MstoreError('EBADINPUT', `${display} is rebuilt by merge kernel ${recipe.kernel}; this mstore implements ${MERGE_KERNEL} only (docs/merge.md): use an mstore that implements ${recipe.kernel}`);
  }
  const dirs = recipeDirs(reader, recipe, display, whole);
  for (const f of recipe.base.files) checkSize(reader, f, display);
  checkSize(reader, recipe.adapter.weights, display);
  // Inputs that do not make a merge mean a damaged record: a recipe is only made from a merge that ran.
  const damaged = (e: unknown): never => {
    if (e instanceof MstoreError && e.code === 'EBADINPUT') throw new MstoreError('ECORRUPT', `${display}: its recipe does not make a merge: ${e.message}`);
    throw e;
  };
  const model = await openBaseModel(dirs.base).catch(damaged);
  // The record's file order is the one the merge reads (its one byte form); a file the base
  // model does not read is a damaged record, not a smaller model.
  const order = model.files.map((f) => f.name).join('\n');
  if (order !== recipe.base.files.map((f) => f.name).join('\n')) throw new MstoreError('ECORRUPT', `${display}: its recipe lists the base files ${recipe.base.files.map((f) => f.name).join(', ')}, its base model reads ${model.files.map((f) => f.name).join(', ')}`);
  const plan = await planAdapterIn(dirs.adapter, model, merger.pool).catch(damaged);
  return { model, plan, dirs };
}

/** openInputs, and the file the recipe makes checked against the size the record says. */
export async function openRecipe(reader: ContentReader, merger: WeightMerger, recipe: Recipe, display: string, whole: boolean): Promise<OpenRecipe> {
  const open = await openInputs(reader, merger, recipe, display, whole);
  recipeFile(open, recipe, display);
  return open;
}

/** The base file a recipe merges, checked against the size the record says. */
export function recipeFile(open: OpenRecipe, recipe: Recipe, display: string): BaseModel['files'][number] {
  const file = open.model.files.find((f) => f.name === recipe.file)!;
  if (mergedHead(file).size !== recipe.size) throw new MstoreError('ECORRUPT', `${display}: its recipe says ${recipe.size} bytes, its inputs make ${mergedHead(file).size}`);
  return file;
}

/** What the merged files of one merge share: the same inputs, kernel and texts (the recipe without its file and size). */
export function recipeInputsKey(recipe: Recipe): string {
  return createHash('sha256').update(encodeRecipe({ ...recipe, file: recipe.base.files[0].name, size: 0 })).digest('hex');
}

/**
 * Rebuilds the file `oid` (`display` in errors) from its recipe into `out`, front to back, and
 * resolves only when the bytes hash to `oid`; until then `out` holds unverified bytes (callers
 * publish only after). Without `digest`, every input chunk read is re-hashed to its id as well
 * and the output is hashed here. With `digest` (the sha256 of what `out` got, hashed by the
 * caller, who publishes nothing before this resolves), the base file's chunks are read unchecked:
 * the output's hash proves them, as a stored file's proves its chunks, and a damaged chunk is
 * named after a mismatch. A recipe of another merge kernel version is refused naming the version
 * it needs.
 */
export async function rebuild(reader: ContentReader, merger: WeightMerger, recipe: Recipe, oid: string, display: string, out: WeightOut, inputs?: OpenRecipe, digest?: () => Promise<string>): Promise<void> {
  const open = inputs ?? (await openRecipe(reader, merger, recipe, display, false));
  const file = recipeFile(open, recipe, display);
  const stored = digest && file.source instanceof StoredSource ? file.source : undefined;
  // The damage a failure came from, when a chunk the output's hash was to prove is damaged (a
  // failure to look, a pack that cannot be read, leaves the failure as it was).
  const named = async (e: unknown): Promise<never> => {
    if (stored && e instanceof MstoreError && e.code === 'ECORRUPT') {
      const damage = await stored.findDamage().then(
        () => undefined,
        (d: unknown) => d,
      );
      if (damage instanceof MstoreError) throw damage;
    }
    throw e;
  };
  let got: string;
  if (digest) {
    const unchecked = stored?.unchecked();
    try {
      await merger.write(file, out, open.plan, open.model, undefined, unchecked).catch(named);
    } finally {
      await unchecked?.close();
    }
    got = await digest();
  } else {
    const hash = createHash('sha256');
    await merger.write(file, { write: (b) => (hash.update(b), out.write(b)) }, open.plan, open.model);
    got = hash.digest('hex');
  }
  if (got !== oid) await named(new MstoreError('ECORRUPT', `${display}: rebuilt from its recipe, it hashes to ${got}, expected ${oid}`));
}

/** An input's stored size must be the one the recipe names (a different file under the same id cannot be: this catches a damaged record). */
function checkSize(reader: ContentReader, f: RecipeInput, display: string): void {
  const m = reader.manifest(f.oid, `${display} (its recipe's input ${f.name})`);
  if (m.size !== f.size) throw new MstoreError('ECORRUPT', `${display}: its recipe's input ${f.name} is ${f.size} bytes in the recipe, ${m.size} in the store`);
}

/**
 * The inputs last opened (base model and adapter plan), by recipeInputsKey: the merged files of
 * one merge share them, so the adapter and the shard headers are read once, not once per file.
 * One set is held, whatever the number of merges met. Callers pass the same reader and merger
 * every time (an adapter plan belongs to its merger's threads).
 */
export class LastOpened {
  private last: { key: string; open: Promise<OpenRecipe> } | undefined;

  get(reader: ContentReader, merger: WeightMerger, recipe: Recipe, display: string): Promise<OpenRecipe> {
    const key = recipeInputsKey(recipe);
    if (this.last?.key !== key) {
      const open = openInputs(reader, merger, recipe, display, false);
      // A failed open is not kept: the next call tries again (and this one's caller gets the error).
      open.catch(() => {
        if (this.last?.open === open) this.last = undefined;
      });
      this.last = { key, open };
    }
    return this.last.open;
  }
}

/**
 * The Rebuilder every reader of a store gets (repo/content-reader.ts): recipes rebuilt by the
 * built-in merge, its kernel threads started on the first recipe a reader meets.
 */
export class RecipeRebuilder implements Rebuilder {
  private merger: WeightMerger | undefined;
  private readonly opened = new LastOpened();
  constructor(private readonly threads = Math.max(1, os.availableParallelism())) {}

  async rebuild(reader: ContentReader, oid: string, record: Buffer, display: string, write: (bytes: Uint8Array) => Promise<void> | void, digest?: () => Promise<string>): Promise<void> {
    const recipe = parseRecipe(record, `${display} (its recipe)`);
    const merger = (this.merger ??= new WeightMerger({ threads: this.threads }));
    const inputs = await this.opened.get(reader, merger, recipe, display);
    await rebuild(reader, merger, recipe, oid, display, { write: async (b) => write(b) }, inputs, digest);
  }

  async close(): Promise<void> {
    await this.merger?.close();
    this.merger = undefined;
  }
}

/** Recipe content proven whole, per store handle: a server's requests share their proofs. */
const provenIn = new WeakMap<Store, Set<string>>();

/** A reader of `store`'s content that rebuilds what the store keeps as recipes: the one every command uses. */
export function openReader(store: Store, hasher: ParallelHasher = store.hasher): ContentReader {
  let proven = provenIn.get(store);
  if (!proven) provenIn.set(store, (proven = new Set()));
  return new ContentReader(store.index, hasher, store.packsDir, new RecipeRebuilder(), proven);
}

