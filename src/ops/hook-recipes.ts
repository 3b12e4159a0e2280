/**
 * A consolidation hook's output (a store's own hook, the torch worker: directories) kept as
 * recipes where the built-in merge reproduces it (docs/format.md §18, docs/hooks.md): for each
 * merged weight file, the built-in merge is run from the file's recipe, reading the store, and
 * its bytes hashed; a file whose sha256 is the rebuild's is kept as that recipe, any other as the
 * bytes the hook wrote. The recipe is then what a rebuild makes, proven by running it: torch on the
 * CPU sums as the kernel does (docs/merge.md), so its merges are usually reproduced; one that sums
 * otherwise (a GPU's split sums) or a hook of other arithmetic is kept as bytes.
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { MstoreError } from '../lib/errors.js';
import type { Recipe } from '../format/recipe.js';
import type { ContentReader } from '../repo/content-reader.js';
import type { Store } from '../repo/store.js';
import { hashFile } from '../repo/workspace.js';
import { openBaseModel } from '../merge/base-model.js';
import { WeightMerger, planAdapterIn } from '../merge/merge.js';
import { openRecipe, recipeInputsKey, recipesOf, type OpenRecipe } from './recipe.js';
import type { VersionDir } from './stored-source.js';

/** A weight file of a hook's output the built-in merge reproduced: its content id, size and recipe. */
export interface Reproduced {
  oid: string;
  size: number;
  recipe: Recipe;
}

/**
 * The merged weight files under `output` (the hook's output directory, laid out as the base
 * model's) that the built-in merge of `adapter` into `base` reproduces bit for bit, by their
 * path in `output`. Each is hashed as it lies on disk, then made from its recipe (every input
 * chunk re-hashed to its id as it is read) and hashed: only equal digests count. A file whose
 * size is not the recipe's is not merged again. `onProgress` counts the bytes merged.
 */
export async function reproducedByBuiltin(
  store: Store,
  reader: ContentReader,
  base: VersionDir,
  adapter: VersionDir,
  output: string,
  onProgress?: (done: number, total: number) => void,
): Promise<Map<string, Reproduced>> {
  const out = new Map<string, Reproduced>();
  const merger = new WeightMerger({ threads: Math.max(1, os.availableParallelism()) });
  try {
    // Inputs the built-in merge does not take (an adapter kind only the hook knows, a hook that
    // merges something else): nothing to reproduce, the hook's bytes are kept.
    const unmergeable = (e: unknown): undefined => {
      if (e instanceof MstoreError && e.code === 'EBADINPUT') return undefined;
      throw e;
    };
    const model = await openBaseModel(base).catch(unmergeable);
    const plan = model && (await planAdapterIn(adapter, model, merger.pool).catch(unmergeable));
    if (!model || !plan) return out;
    const recipes = await recipesOf(model, plan, base, adapter, (oid) => store.index.hasFile(Buffer.from(oid, 'hex')));
    // The files of one merge share their inputs: opened once.
    const opened = new Map<string, OpenRecipe>();
    const total = [...recipes.values()].reduce((a, r) => a + r.size, 0);
    let done = 0;
    for (const [name, recipe] of recipes) {
      const file = path.join(output, ...name.split('/'));
      const { oid, stat } = await hashFile(file, `the hook's output ${name}`);
      if (stat.size !== recipe.size) {
        onProgress?.((done += recipe.size), total);
        continue;
      }
      const display = `the hook's output ${name} (made again by the built-in merge)`;
      const key = recipeInputsKey(recipe);
      if (!opened.has(key)) opened.set(key, await openRecipe(reader, merger, recipe, display, false));
      const inputs = opened.get(key)!;
      const made = inputs.model.files.find((f) => f.name === recipe.file)!;
      const hash = createHash('sha256');
      await merger.write(made, { write: async (b) => void hash.update(b) }, inputs.plan, inputs.model, (n) => onProgress?.((done += n), total));
      if (hash.digest('hex') === oid) out.set(name, { oid, size: stat.size, recipe });
    }
    return out;
  } finally {
    await merger.close();
  }
}
