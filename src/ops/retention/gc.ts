/**
 * `gc`: frees chunk data that no version needs. Kept: everything a ref reaches, everything
 * a ref-history entry younger than the grace period reaches (restorable versions), and
 * every pack written within the grace period. A presence check of all of that runs first.
 * Packs are rewritten crash-safely: live entries copied (re-hashed) into new packs that are
 * fsynced and renamed, then the index switched in one transaction, then old packs unlinked.
 * A crash leaves at worst an extra pack on disk, which the next writer re-indexes. gc holds
 * the exclusive lock: running readers (verify, fsck, checkout --to, a fetch) finish first, and
 * no new one starts until it is done.
 */
import { open, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { MstoreError } from '../../lib/errors.js';
import type { Store } from '../../repo/store.js';
import { now } from '../../lib/clock.js';
import { sha256 } from '../../lib/hashing.js';
import { PackWriter, ENTRY_CHUNK, ENTRY_FILE, ENTRY_RECIPE, packPath, readPackTable, type PackEntry, type PackInfo } from '../../repo/pack.js';
import type { ChunkLocation } from '../../repo/index-db.js';
import { indexPacks } from '../../repo/reindex.js';
import { refRoots, historyRoots, mergeRoots, contentOf, type Roots } from '../../repo/reach.js';
import { verify } from '../integrity/verify.js';
import { fsyncDir } from '../../lib/fsutil.js';
import { parseRecipe, recipeInputs } from '../../format/recipe.js';

export const DEFAULT_GRACE = '14d';

export interface GcOptions {
  graceMs: number;
  dryRun?: boolean;
}

export interface GcResult {
  dryRun: boolean;
  versions: { live: number; restorable: number };
  packs: { total: number; removed: number; rewritten: number; written: number; young: number; damaged: string[] };
  chunks: { removed: number; kept: number };
  files: { removed: number };
  /** Bytes of pack files removed minus bytes of packs written. */
  freedBytes: number;
  statEntriesDropped: number;
}

interface PackPlan {
  id: string;
  size: number;
  live: PackEntry[];
  dead: PackEntry[];
}

export async function gc(store: Store, opts: GcOptions): Promise<GcResult> {
  return store.withExclusiveLock('gc', async () => {
    const index = store.index;
    const t = now();
    const since = new Date(t.getTime() - opts.graceMs);

    // Packs a crashed writer left unindexed are accounted for first.
    const reindexed = await indexPacks(store);
    const damaged = reindexed.damaged.map((d) => d.pack);

    const refs = await refRoots(store.repo);
    if (refs.problems.length) {
      throw new MstoreError('ECORRUPT', `gc refused: ${refs.problems[0].message} (a broken ref hides what it needs; run mstore fsck)`);
    }
    // Present is what gc needs: a recipe of a merge kernel this mstore lacks is content too.
    const presence = await verify(store, { commits: refs.roots, mode: 'quick' });
    const absent = presence.problems.find((p) => !p.unsupported);
    if (absent) {
      throw new MstoreError('ECORRUPT', `gc refused, nothing removed: the presence check failed (${absent.message}); run mstore verify --all`);
    }
    // Removed versions within the grace period stay restorable, unless an earlier gc with a
    // shorter grace already freed their content: those are past saving and not kept.
    const history = await historyRoots(store, since);
    for (const c of refs.roots.keys()) history.delete(c);
    const restorable: Roots = new Map();
    if (history.size) {
      const check = await verify(store, { commits: history, mode: 'quick' });
      for (const v of check.versions) if (v.present) restorable.set(v.commit, history.get(v.commit)!);
    }
    const roots = mergeRoots(refs.roots, restorable);
    const content = await contentOf(store.repo, roots.keys(), (c) => c.slice(0, 12));
    // Every pack's table; the young ones (written within the grace period) are not touched.
    const tables = new Map<string, PackEntry[]>();
    const youngFiles = new Set<string>();
    let young = 0;
    const packIds = index.packIds();
    for (const id of packIds) {
      try {
        tables.set(id, await readPackTable(store.packsDir, id));
      } catch {
        damaged.push(id);
        continue;
      }
      if (Date.parse(index.packInfo(id)!.created) > since.getTime()) {
        young++;
        for (const e of tables.get(id)!) if (e.type === ENTRY_FILE || e.type === ENTRY_RECIPE) youngFiles.add(e.id.toString('hex'));
      }
    }
    const protectedPacks = new Set(damaged);

    // Content kept as a recipe needs its recipe and the files it reads (which are in chunks). A
    // recipe row gc keeps for another reason (young, or a damaged pack) keeps its inputs too:
    // no recipe row ever outlives the files it reads.
    const neededFiles = new Set<string>();
    const neededRecipes = new Set<string>();
    for (const oid of content.keys()) {
      (index.heldAsRecipe(Buffer.from(oid, 'hex')) ? neededRecipes : neededFiles).add(oid);
    }
    const dropRecipes: Buffer[] = [];
    for (const [oid, record] of index.recipeRows()) {
      const key = oid.toString('hex');
      if (!neededRecipes.has(key) && !youngFiles.has(key) && !protectedPacks.size) {
        dropRecipes.push(oid);
        continue;
      }
      for (const input of recipeInputs(parseRecipe(record, `recipe ${key} in the index`))) neededFiles.add(input.oid);
    }
    const dropping = new Set(dropRecipes.map((b) => b.toString('hex')));
    const neededChunks = new Set<string>();
    for (const oid of neededFiles) for (const c of index.file(Buffer.from(oid, 'hex'))?.chunks ?? []) neededChunks.add(c.id.toString('hex'));

    // Classify every old-enough pack's entries.
    const plans: PackPlan[] = [];
    for (const id of packIds) {
      const info = index.packInfo(id)!;
      const entries = tables.get(id);
      if (!entries || Date.parse(info.created) > since.getTime()) continue;
      const plan: PackPlan = { id, size: info.size, live: [], dead: [] };
      for (const e of entries) {
        const key = e.id.toString('hex');
        let live: boolean;
        if (e.type === ENTRY_CHUNK) {
          const loc = index.chunk(e.id);
          live = neededChunks.has(key) && !!loc && loc.pack === id && loc.offset === e.offset;
        } else if (e.type === ENTRY_FILE) live = neededFiles.has(key);
        else live = e.type === ENTRY_RECIPE && index.hasRecipe(e.id) && !dropping.has(key);
        (live ? plan.live : plan.dead).push(e);
      }
      if (plan.dead.length) plans.push(plan);
    }
    const touched = new Set(plans.map((p) => p.id));

    const result: GcResult = {
      dryRun: !!opts.dryRun,
      versions: { live: refs.roots.size, restorable: restorable.size },
      packs: { total: packIds.length, removed: 0, rewritten: 0, written: 0, young, damaged },
      chunks: { removed: 0, kept: 0 },
      files: { removed: 0 },
      freedBytes: 0,
      statEntriesDropped: 0,
    };

    // Index rows that go: chunks whose only indexed copy is in a touched pack and is dead,
    // files no version needs (unless a young or damaged pack holds them).
    const moving = new Set<string>();
    for (const p of plans) for (const e of p.live) if (e.type === ENTRY_CHUNK) moving.add(e.id.toString('hex'));
    const dropChunks: Buffer[] = [];
    for (const [id, loc] of index.chunkRows()) {
      if (touched.has(loc.pack) && !moving.has(id.toString('hex'))) dropChunks.push(id);
    }
    const dropFiles: Buffer[] = [];
    for (const [oid] of index.fileRows()) {
      const key = oid.toString('hex');
      if (!neededFiles.has(key) && !youngFiles.has(key) && !protectedPacks.size) dropFiles.push(oid);
    }
    result.chunks.removed = dropChunks.length;
    result.chunks.kept = neededChunks.size;
    result.files.removed = dropFiles.length + dropRecipes.length;
    const dropped = new Set(dropFiles.map((b) => b.toString('hex')));
    const dropStats: string[] = [];
    for (const p of index.statPaths()) {
      const e = index.stat(p);
      if (e?.kind === 'lfs' && dropped.has(e.oid)) dropStats.push(p);
    }
    result.statEntriesDropped = dropStats.length;

    const rewrite = plans.filter((p) => p.live.length);
    const remove = plans.filter((p) => !p.live.length);
    result.packs.removed = remove.length;
    result.packs.rewritten = rewrite.length;
    const oldBytes = plans.reduce((a, p) => a + p.size, 0);
    if (opts.dryRun) {
      const liveBytes = rewrite.reduce((a, p) => a + p.live.reduce((b, e) => b + e.length, 0), 0);
      result.freedBytes = oldBytes - liveBytes;
      return result;
    }

    // 1. Live entries of partly dead packs into new packs (re-hashed on the way), fsynced.
    const writer = new PackWriter(store.tmpDir, store.packsDir, store.config.chunking.packTargetBytes);
    let newPacks: PackInfo[];
    try {
      for (const p of rewrite) {
        const fh: FileHandle = await open(packPath(store.packsDir, p.id), 'r');
        try {
          for (const e of p.live) {
            const data = Buffer.allocUnsafe(e.length);
            const { bytesRead } = await fh.read(data, 0, e.length, e.offset);
            if (bytesRead !== e.length || (e.type === ENTRY_CHUNK && !sha256(data).equals(e.id))) {
              throw new MstoreError('ECORRUPT', `gc aborted, nothing removed: ${e.type === ENTRY_CHUNK ? 'chunk' : e.type === ENTRY_FILE ? 'manifest' : 'recipe'} ${e.id.toString('hex')} in pack ${p.id} is damaged`);
            }
            await writer.add(e.type, e.id, data);
          }
        } finally {
          await fh.close();
        }
      }
      newPacks = await writer.finish();
    } catch (e) {
      await writer.abort();
      throw e;
    }
    // 2. The index switch, one transaction.
    const moveChunks = new Map<string, ChunkLocation>();
    for (const np of newPacks) {
      for (const e of np.entries) if (e.type === ENTRY_CHUNK) moveChunks.set(e.id.toString('hex'), { pack: np.id, offset: e.offset, length: e.length });
    }
    // A rewritten pack can come out identical to a touched one (same live entries in the same
    // order: the duplicate an interrupted gc left behind). Same table, same id, same file: it
    // is the new pack now, and must be neither dropped from the index nor unlinked.
    const newIds = new Set(newPacks.map((p) => p.id));
    try {
      index.switchPacks({ newPacks, moveChunks, dropChunks, dropFiles, dropRecipes, dropPacks: [...touched].filter((id) => !newIds.has(id)), dropStats });
    } catch (e) {
      // Nothing switched: the new packs go again (never one that was already there).
      await writer.discard(newPacks);
      throw e;
    }
    // 3. Old packs go only now that nothing points into them.
    const dirs = new Set<string>();
    for (const p of plans) {
      if (newIds.has(p.id)) continue;
      const file = packPath(store.packsDir, p.id);
      await unlink(file).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
      dirs.add(path.dirname(file));
    }
    for (const d of dirs) await fsyncDir(d);
    result.packs.written = newPacks.length;
    result.freedBytes = oldBytes - newPacks.reduce((a, p) => a + p.size, 0);
    return result;
  });
}
