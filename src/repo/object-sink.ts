/**
 * The one write path of a store: every chunk, file manifest and git object that enters a
 * store (commit, import, backup copy, pull, a push received) goes through an ObjectSink.
 * gc's repack is the only other pack writer.
 *
 * Rules it keeps (docs/format.md §5.6 and §9, docs/safety.md):
 * - data first: a pack is sealed (table, footer, fdatasync, rename, directory fsync) before
 *   the index names anything in it, and the index records a batch of packs in one
 *   transaction;
 * - a file manifest is recorded only with, or after, every chunk it lists: it is written to
 *   a pack after its chunks, and recorded in the same transaction as the pack holding it;
 * - a recipe likewise only with, or after, the manifests of every input it reads, and never for
 *   content the store holds; the store's format allows recipes before the first is recorded;
 * - nothing is stored twice: a chunk or manifest the index or this sink already has is
 *   skipped; a git object that exists is not rewritten;
 * - a git object is stored only under the id it hashes to.
 * Callers verify what they hand in (chunk ids, manifests against their chunks); the sink
 * checks presence, not content.
 *
 * A staged sink (`staging`, for uploads received without the store lock) writes packs and git
 * objects into its own directory; publish() seals them there, then, holding the lock only for
 * that, moves the packs into the store (a pack whose every entry the store meanwhile got is
 * dropped), writes the git objects and records the index: the same order, the lock held for a
 * rename and an index transaction instead of for the whole upload.
 */
import { mkdir, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { PackWriter, ENTRY_CHUNK, ENTRY_FILE, ENTRY_RECIPE, packPath, type PackInfo } from './pack.js';
import type { NewFile, NewRecipe, StatEntry, StoreIndex } from './index-db.js';
import { parseRecipe, recipeInputs } from '../format/recipe.js';
import { GitPackWriter } from './git-pack.js';
import { gitObjects, hashObject } from './git-objects.js';
import type { GitType } from './git-walk.js';
import { MstoreError } from '../lib/errors.js';
import { fsyncDir } from '../lib/fsutil.js';

/** Where a sink writes: a store's index, pack directories and git repository. */
export interface SinkTarget {
  index: StoreIndex;
  tmpDir: string;
  packsDir: string;
  gitdir: string;
  /** Makes the store's format one that holds recipes (store.ts); run before a recipe is recorded. */
  allowRecipes(): Promise<void>;
}

/** Where a staged sink writes until it publishes, and how it takes the store's writer lock. */
export interface Staging {
  /** The upload's own directory (created empty by the caller; removed by the caller after). */
  dir: string;
  /** Runs `fn` holding the store's writer lock. */
  lock: <T>(fn: () => Promise<T>) => Promise<T>;
}

export class ObjectSink {
  private readonly packs: PackWriter;
  /** Chunks written by this sink (indexed or not yet). */
  private readonly chunks = new Set<string>();
  /** Manifests written to packs and not yet recorded, by oid. */
  private pending = new Map<string, NewFile>();
  private readonly files = new Set<string>();
  /** Recipes written to packs and not yet recorded, by oid; and every recipe this sink took. */
  private pendingRecipes = new Map<string, NewRecipe>();
  private readonly recipes = new Set<string>();
  /** Background publishing (publishBehind): its failure surfaces at the next publish(). */
  private behind: Promise<void> = Promise.resolve();
  /** Chunk bytes handed to the pack writer since the last publish. */
  unpublishedBytes = 0;
  newChunks = 0;
  newBytes = 0;
  newFiles = 0;
  /** Recipes this sink stored (addRecipe calls that found the content absent). */
  newRecipes = 0;
  /** Git objects this sink stored (addGitObject calls that found the object absent). */
  newGitObjects = 0;

  /** Git objects added and not yet sealed into the repository (in a temporary beside it, or in the staging folder). */
  private gitPack: GitPackWriter | undefined;

  constructor(
    private readonly target: SinkTarget,
    packTargetBytes: number,
    private readonly staging?: Staging,
  ) {
    this.packs = staging
      ? new PackWriter(path.join(staging.dir, 'tmp'), path.join(staging.dir, 'packs'), packTargetBytes)
      : new PackWriter(target.tmpDir, target.packsDir, packTargetBytes);
  }

  hasChunk(id: Buffer): boolean {
    return this.chunks.has(id.toString('hex')) || this.target.index.hasChunk(id);
  }

  /** Whether the store or this sink holds content `oid`, as chunks or as its recipe. */
  hasFile(oid: Buffer): boolean {
    const key = oid.toString('hex');
    return this.files.has(key) || this.recipes.has(key) || this.target.index.hasContent(oid);
  }

  /** Whether content `oid` is in chunks (a manifest), in the store or this sink: what a recipe may read. */
  private hasManifest(oid: Buffer): boolean {
    return this.files.has(oid.toString('hex')) || this.target.index.hasFile(oid);
  }

  /**
   * Writes a chunk unless the store or this sink has it (then undefined). The promise settles
   * once its bytes are written; `data` must stay unchanged until then.
   */
  addChunk(id: Buffer, data: Uint8Array): Promise<void> | undefined {
    if (this.hasChunk(id)) return undefined;
    this.chunks.add(id.toString('hex'));
    this.newChunks++;
    this.newBytes += data.length;
    this.unpublishedBytes += data.length;
    return this.packs.add(ENTRY_CHUNK, id, data);
  }

  /**
   * Writes a file manifest unless the store or this sink has it (then undefined). Every chunk
   * it lists must be stored already, or handed to this sink before the publish() that records
   * the manifest (with publishBehind(), before the manifest itself).
   */
  addFile(oid: Buffer, size: number, manifest: Buffer, opts: { replaceRecipe?: boolean } = {}): Promise<void> | undefined {
    // Bytes for content kept as a recipe are stored only when asked (materialize): they replace it.
    if (opts.replaceRecipe ? this.hasManifest(oid) : this.hasFile(oid)) return undefined;
    const key = oid.toString('hex');
    this.files.add(key);
    this.pending.set(key, { oid, size, manifest });
    this.newFiles++;
    return this.packs.add(ENTRY_FILE, oid, manifest);
  }

  /**
   * Writes the recipe `record` (docs/format.md §18) for content `oid` unless the store or this
   * sink holds that content (then nothing). The caller has proven it (rebuilt the content and
   * hashed it to `oid`); this checks that every input it reads is held in chunks, here or in
   * this sink (handed in before the publish that records the recipe), else EMISSING naming it.
   */
  async addRecipe(oid: Buffer, record: Buffer, display: string): Promise<void> {
    if (this.hasFile(oid)) return;
    for (const input of recipeInputs(parseRecipe(record, display))) {
      if (!this.hasManifest(Buffer.from(input.oid, 'hex'))) {
        throw new MstoreError('EMISSING', `${display}: its recipe reads ${input.name} (${input.oid}), which this store does not hold in chunks`);
      }
    }
    // The format first: a pack holding a recipe may be sealed (and, after a kill, indexed) any time after.
    await this.target.allowRecipes();
    const key = oid.toString('hex');
    if (this.recipes.has(key)) return;
    this.recipes.add(key);
    this.pendingRecipes.set(key, { oid, record });
    this.newRecipes++;
    await this.packs.add(ENTRY_RECIPE, oid, record);
  }

  /**
   * Stores a git object (content without the loose header) unless present; `expected`, when
   * given, is the id it must hash to. Returns its id. Git objects go into one git pack per
   * publish (git-pack.ts: one file and one fsync for a whole history, not one per object),
   * visible to readers only once publish() or flushGit() sealed it.
   */
  async addGitObject(type: GitType, content: Uint8Array, expected?: string): Promise<string> {
    if (expected && (await this.hasGitObject(expected))) return expected;
    const id = hashObject(type, content);
    if (expected && id !== expected) throw new MstoreError('ECORRUPT', `git object ${expected} hashes to ${id}`);
    if (!expected && (await this.hasGitObject(id))) return id;
    this.gitPack ??= new GitPackWriter(this.staging ? this.staging.dir : this.gitPackDir);
    this.gitPack.add(id, type, content);
    this.newGitObjects++;
    return id;
  }

  /** Presence as last listed (GitObjects.hasListed): a miss that is wrong costs a duplicate in the new pack. */
  async hasGitObject(id: string): Promise<boolean> {
    return !!this.gitPack?.has(id) || gitObjects(this.target.gitdir).hasListed(id);
  }

  private get gitPackDir(): string {
    return path.join(this.target.gitdir, 'objects', 'pack');
  }

  /**
   * Seals the git objects added so far into the repository (a staged sink's wait for its
   * publish, under the lock). After this they can be read.
   */
  async flushGit(): Promise<void> {
    if (this.staging) return;
    await this.sealGit();
  }

  private async sealGit(): Promise<void> {
    const w = this.gitPack;
    if (!w) return;
    this.gitPack = undefined;
    await mkdir(this.gitPackDir, { recursive: true });
    await w.finish(this.gitPackDir);
    gitObjects(this.target.gitdir).relist(); // hasGitObject sees the new pack
  }

  /**
   * Records sealed packs and the pending manifests they hold, in one index transaction. When
   * that transaction fails (a full disk), nothing names the packs: they are deleted, so the
   * store is as it was (no unindexed pack is left for fsck to report).
   */
  private async record(packs: PackInfo[], statUpdates?: Map<string, StatEntry | null>): Promise<void> {
    try {
      await this.recordRows(packs, statUpdates);
    } catch (e) {
      // A pack that was in the store before this writer sealed it again is kept (PackWriter.discard).
      await this.packs.discard(packs);
      throw e;
    }
  }

  private async recordRows(packs: PackInfo[], statUpdates?: Map<string, StatEntry | null>): Promise<void> {
    const files: NewFile[] = [];
    const recipes: NewRecipe[] = [];
    for (const p of packs) {
      for (const e of p.entries) {
        const key = e.id.toString('hex');
        const f = e.type === ENTRY_FILE ? this.pending.get(key) : undefined;
        const r = e.type === ENTRY_RECIPE ? this.pendingRecipes.get(key) : undefined;
        if (f) files.push(f);
        if (r) recipes.push(r);
      }
    }
    this.target.index.recordPacks(packs, { files, recipes }, statUpdates);
    for (const f of files) this.pending.delete(f.oid.toString('hex'));
    for (const r of recipes) this.pendingRecipes.delete(r.oid.toString('hex'));
  }

  /**
   * Seals everything written so far and records it (with `statUpdates`, in the same
   * transaction). A background publish that failed fails this one.
   */
  async publish(statUpdates?: Map<string, StatEntry | null>): Promise<void> {
    await this.behind;
    this.unpublishedBytes = 0;
    await this.land(await this.packs.finish(), statUpdates);
  }

  /** Starts sealing and recording what was written so far while the caller keeps writing. */
  publishBehind(): void {
    this.unpublishedBytes = 0;
    this.behind = this.behind.then(async () => this.land(await this.packs.finish()));
    this.behind.catch(() => undefined);
  }

  /** Records sealed packs; a staged sink first moves them (and its git objects) in, under the lock. */
  private async land(packs: PackInfo[], statUpdates?: Map<string, StatEntry | null>): Promise<void> {
    const staging = this.staging;
    if (!staging) {
      await this.record(packs, statUpdates);
      return this.sealGit();
    }
    if (!packs.length && !this.gitPack && !statUpdates?.size) return;
    await staging.lock(async () => {
      const kept: PackInfo[] = [];
      for (const p of packs) if (await this.moveIn(p)) kept.push(p);
      await this.sealGit();
      await this.record(kept, statUpdates);
    });
  }

  /**
   * Moves a sealed staged pack into the store's packs directory (false: dropped, because the
   * store got every entry of it meanwhile from another writer; its manifests are then there).
   */
  private async moveIn(p: PackInfo): Promise<boolean> {
    const from = packPath(path.join(this.staging!.dir, 'packs'), p.id);
    const index = this.target.index;
    const covered = p.entries.every((e) => (e.type === ENTRY_CHUNK ? index.hasChunk(e.id) : index.hasContent(e.id)));
    const to = packPath(this.target.packsDir, p.id);
    const there = await stat(to).then(
      () => true,
      () => false,
    );
    if (covered || there) {
      await unlink(from);
      if (covered) {
        for (const e of p.entries) {
          if (e.type === ENTRY_FILE) this.pending.delete(e.id.toString('hex'));
          if (e.type === ENTRY_RECIPE) this.pendingRecipes.delete(e.id.toString('hex'));
        }
      }
      return !covered;
    }
    if (await mkdir(path.dirname(to), { recursive: true })) await fsyncDir(this.target.packsDir);
    await rename(from, to);
    await fsyncDir(path.dirname(to));
    return true;
  }

  /**
   * After a failure. keep: publish what was written whole (chunks are verified by their id,
   * manifests only follow their chunks), so a rerun need not send it again; if that fails
   * too, or without keep, drop everything unpublished: the store is as it was.
   */
  async abandon(keep: boolean): Promise<void> {
    await this.behind.catch(() => undefined);
    this.behind = Promise.resolve();
    if (keep) {
      try {
        await this.land(await this.packs.finish());
        return;
      } catch {
        // fall through: drop what is left
      }
    }
    await this.packs.abort();
    this.gitPack?.abort();
    this.gitPack = undefined;
  }
}
