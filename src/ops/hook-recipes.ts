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
import { lstat, open } from 'node:fs/promises';
import path from 'node:path';
import { MstoreError } from '../lib/errors.js';
import type { Recipe } from '../format/recipe.js';
import type { ContentReader } from '../repo/content-reader.js';
import type { Store } from '../repo/store.js';
import { openBaseModel } from '../merge/base-model.js';
import { NonFiniteMerge, WeightMerger, planAdapterIn } from '../merge/merge.js';
import { LastOpened, recipeFile, recipesOf, type OpenRecipe } from './recipe.js';
import type { StFile } from '../merge/tensors.js';
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
 * path in `output`. Each regular file of its recipe's size is compared with what the built-in
 * merge makes from the recipe (every input chunk re-hashed to its id as it is read), block by
 * block, stopping at the first difference; the content id is the hash of the merge's bytes, equal
 * to the file's. A link, a file of another size, a difference or a non-finite value the built-in
 * merge makes (the hook's output is finite: validated) is not reproduced. `onProgress` counts
 * the recipes' bytes checked.
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
    const opened = new LastOpened();
    const total = [...recipes.values()].reduce((a, r) => a + r.size, 0);
    /** The bytes of the recipes checked before this one. */
    let before = 0;
    for (const [name, recipe] of recipes) {
      const file = path.join(output, ...name.split('/'));
      const st = await lstat(file).catch(() => undefined);
      let oid: string | undefined;
      if (st?.isFile() && st.size === recipe.size) {
        const display = `the hook's output ${name} (made again by the built-in merge)`;
        const inputs = await opened.get(reader, merger, recipe, display);
        let made = 0;
        oid = await sameBytes(file, recipeFile(inputs, recipe, display), inputs, merger, (n) => onProgress?.(before + (made += n), total));
      }
      if (oid) out.set(name, { oid, size: recipe.size, recipe });
      onProgress?.((before += recipe.size), total);
    }
    return out;
  } finally {
    await merger.close();
  }
}

/** The merge stopped at the first block that differs from the hook's file. */
const DIFFERS = new Error('differs');

/**
 * The sha256 of what the built-in merge makes of the base file `made` (through `inputs`), when it equals
 * `file` byte for byte; undefined at the first difference (or a non-finite value it makes).
 */
async function sameBytes(file: string, made: StFile, inputs: OpenRecipe, merger: WeightMerger, onBytes: (n: number) => void): Promise<string | undefined> {
  const fh = await open(file, 'r');
  try {
    const hash = createHash('sha256');
    let theirs = Buffer.alloc(0);
    let pos = 0;
    await merger.write(
      made,
      {
        write: async (b) => {
          if (theirs.length < b.length) theirs = Buffer.allocUnsafe(b.length);
          for (let got = 0; got < b.length; ) {
            const { bytesRead } = await fh.read(theirs, got, b.length - got, pos + got);
            if (bytesRead === 0) throw DIFFERS; // the file ends first
            got += bytesRead;
          }
          if (!theirs.subarray(0, b.length).equals(b)) throw DIFFERS;
          hash.update(b);
          pos += b.length;
        },
      },
      inputs.plan,
      inputs.model,
      onBytes,
    );
    // Nothing past the merge's last byte either.
    if ((await fh.stat()).size !== pos) return undefined;
    return hash.digest('hex');
  } catch (e) {
    if (e === DIFFERS || e instanceof NonFiniteMerge) return undefined;
    throw e;
  } finally {
    await fh.close();
  }
}
