/**
 * Recipe records (docs/format.md §18): how the built-in merge rebuilds one merged weight file bit
 * for bit from stored inputs, instead of keeping its bytes (issue 19). A recipe names the merge
 * arithmetic's version (docs/merge.md), the base model's weight files by content id, the shard
 * index and adapter config by their text, and the adapter's weights by content id. It has one
 * byte form (canonical JSON, below): parsing refuses any other, so a recipe's bytes are a
 * function of what it says.
 */
import { MstoreError } from '../lib/errors.js';

export const RECIPE_SCHEMA = 'mstore.recipe/1';

/** A stored file a recipe reads: its name in its directory, content id (sha256) and size. */
export interface RecipeInput {
  name: string;
  oid: string;
  size: number;
}

export type RecipeAdapter = { format: 'peft'; config: string; weights: RecipeInput } | { format: 'kohya'; weights: RecipeInput };

export interface Recipe {
  schema: typeof RECIPE_SCHEMA;
  /** The merge arithmetic's version that makes the file (MERGE_KERNEL, docs/merge.md). */
  kernel: string;
  /** The file made: its name in the merged model directory (one of `base.files`), and its size. */
  file: string;
  size: number;
  base: {
    /** Every weight file of the base model, in the order the merge reads them. */
    files: RecipeInput[];
    /** The text of model.safetensors.index.json, or null for a single-file base. */
    index: string | null;
  };
  adapter: RecipeAdapter;
}

/** The most UTF-8 bytes of inline text (an adapter config, a shard index) a recipe may hold. */
export const RECIPE_TEXT_MAX = 4 * 1024 * 1024;
/** The most bytes of a whole record: it travels as one object (remote/wire.ts allows 16 MiB). */
export const RECIPE_RECORD_MAX = 12 * 1024 * 1024;

/** The weights file of a PEFT adapter (the only name peft writes them under). */
export const PEFT_WEIGHTS = 'adapter_model.safetensors';

/** Every stored file a recipe reads: the base's weight files, then the adapter's weights. */
export function recipeInputs(r: Recipe): RecipeInput[] {
  return [...r.base.files, r.adapter.weights];
}

const input = (i: RecipeInput): RecipeInput => ({ name: i.name, oid: i.oid, size: i.size });

/** The canonical bytes: JSON with the keys in the order of the interfaces above, no spaces, a final newline. */
export function encodeRecipe(r: Recipe): Buffer {
  const adapter = r.adapter.format === 'peft' ? { format: 'peft', config: r.adapter.config, weights: input(r.adapter.weights) } : { format: 'kohya', weights: input(r.adapter.weights) };
  const canonical = { schema: r.schema, kernel: r.kernel, file: r.file, size: r.size, base: { files: r.base.files.map(input), index: r.base.index }, adapter };
  return Buffer.from(`${JSON.stringify(canonical)}\n`);
}

/** The version number of a kernel name `mstore-merge/N`, or undefined when it is not one. */
export function kernelNumber(kernel: string): number | undefined {
  const m = /^mstore-merge\/([1-9][0-9]{0,5})$/.exec(kernel);
  return m ? Number(m[1]) : undefined;
}

/** Parses a recipe's bytes; anything but a valid recipe in its canonical form is ECORRUPT naming `where`. */
export function parseRecipe(data: Uint8Array, where: string): Recipe {
  const bad = (why: string): never => {
    throw new MstoreError('ECORRUPT', `${where}: recipe ${why}`);
  };
  if (data.length > RECIPE_RECORD_MAX) bad(`is ${data.length} bytes, over the ${RECIPE_RECORD_MAX}-byte limit`);
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch {
    bad('is not UTF-8 JSON');
  }
  const obj = (v: unknown, keys: string[], what: string): Record<string, unknown> => {
    if (!v || typeof v !== 'object' || Array.isArray(v)) bad(`${what} is not an object`);
    const o = v as Record<string, unknown>;
    const have = Object.keys(o);
    if (have.length !== keys.length || !keys.every((k) => k in o)) bad(`${what} has the keys ${JSON.stringify(have)}, not ${JSON.stringify(keys)}`);
    return o;
  };
  const text = (v: unknown, what: string): string => {
    if (typeof v !== 'string' || Buffer.byteLength(v) > RECIPE_TEXT_MAX) bad(`${what} is not a string of at most ${RECIPE_TEXT_MAX} bytes`);
    return v as string;
  };
  const name = (v: unknown, what: string): string => {
    const s = text(v, what);
    if (!s || s === '.' || s === '..' || /[/\\\0]/.test(s) || Buffer.byteLength(s) > 255) bad(`${what} ${JSON.stringify(s)} is not a file name`);
    return s;
  };
  const size = (v: unknown, what: string): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) bad(`${what} is not a size`);
    return v as number;
  };
  const inputOf = (v: unknown, what: string): RecipeInput => {
    const o = obj(v, ['name', 'oid', 'size'], what);
    if (typeof o.oid !== 'string' || !/^[0-9a-f]{64}$/.test(o.oid)) bad(`${what}.oid is not a sha256`);
    return { name: name(o.name, `${what}.name`), oid: o.oid as string, size: size(o.size, `${what}.size`) };
  };
  const r = obj(raw, ['schema', 'kernel', 'file', 'size', 'base', 'adapter'], 'the record');
  if (r.schema !== RECIPE_SCHEMA) bad(`schema is ${JSON.stringify(r.schema)}, not ${RECIPE_SCHEMA}`);
  const kernel = text(r.kernel, 'kernel');
  if (kernelNumber(kernel) === undefined) bad(`kernel ${JSON.stringify(kernel)} is not mstore-merge/N`);
  const b = obj(r.base, ['files', 'index'], 'base');
  if (!Array.isArray(b.files) || !b.files.length) bad('base.files is not a non-empty list');
  const files = (b.files as unknown[]).map((f, i) => inputOf(f, `base.files[${i}]`));
  if (new Set(files.map((f) => f.name)).size !== files.length) bad('base.files names a file twice');
  const index = b.index === null ? null : text(b.index, 'base.index');
  const file = name(r.file, 'file');
  if (!files.some((f) => f.name === file)) bad(`file ${file} is not one of base.files`);
  const a = r.adapter as { format?: unknown } | null;
  let adapter: RecipeAdapter;
  if (a?.format === 'peft') {
    const o = obj(a, ['format', 'config', 'weights'], 'adapter');
    adapter = { format: 'peft', config: text(o.config, 'adapter.config'), weights: inputOf(o.weights, 'adapter.weights') };
    if (adapter.weights.name !== PEFT_WEIGHTS) bad(`adapter.weights.name is ${JSON.stringify(adapter.weights.name)}, not ${PEFT_WEIGHTS}`);
  } else if (a?.format === 'kohya') {
    const o = obj(a, ['format', 'weights'], 'adapter');
    adapter = { format: 'kohya', weights: inputOf(o.weights, 'adapter.weights') };
  } else bad('adapter.format is not peft or kohya');
  const recipe: Recipe = { schema: RECIPE_SCHEMA, kernel, file, size: size(r.size, 'size'), base: { files, index }, adapter: adapter! };
  if (!encodeRecipe(recipe).equals(Buffer.from(data.buffer, data.byteOffset, data.byteLength))) bad('is not in its canonical form (key order, spacing, final newline)');
  return recipe;
}
