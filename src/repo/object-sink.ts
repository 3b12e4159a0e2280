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
 * - nothing is stored twice: a chunk or manifest the index or this sink already has is
 *   skipped; a git object that exists is not rewritten;
 * - a git object is stored only under the id it hashes to.
 * Callers verify what they hand in (chunk ids, manifests against their chunks); the sink
 * checks presence, not content.
 */
import git from 'isomorphic-git';
import { PackWriter, ENTRY_CHUNK, ENTRY_FILE, type PackInfo } from './pack.js';
import type { NewFile, StatEntry, StoreIndex } from './index-db.js';
import { gitFs } from './git-fs.js';
import { hasObject, type GitType } from './git-walk.js';
import { MstoreError } from '../lib/errors.js';

/** Where a sink writes: a store's index, pack directories and git repository. */
export interface SinkTarget {
  index: StoreIndex;
  tmpDir: string;
  packsDir: string;
  gitdir: string;
}

export class ObjectSink {
  private readonly packs: PackWriter;
  /** Chunks written by this sink (indexed or not yet). */
  private readonly chunks = new Set<string>();
  /** Manifests written to packs and not yet recorded, by oid. */
  private pending = new Map<string, NewFile>();
  private readonly files = new Set<string>();
  /** Background publishing (publishBehind): its failure surfaces at the next publish(). */
  private behind: Promise<void> = Promise.resolve();
  /** Chunk bytes handed to the pack writer since the last publish. */
  unpublishedBytes = 0;
  newChunks = 0;
  newBytes = 0;
  newFiles = 0;

  constructor(
    private readonly target: SinkTarget,
    packTargetBytes: number,
  ) {
    this.packs = new PackWriter(target.tmpDir, target.packsDir, packTargetBytes);
  }

  hasChunk(id: Buffer): boolean {
    return this.chunks.has(id.toString('hex')) || this.target.index.hasChunk(id);
  }

  hasFile(oid: Buffer): boolean {
    const key = oid.toString('hex');
    return this.files.has(key) || this.target.index.hasFile(oid);
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
  addFile(oid: Buffer, size: number, manifest: Buffer): Promise<void> | undefined {
    if (this.hasFile(oid)) return undefined;
    const key = oid.toString('hex');
    this.files.add(key);
    this.pending.set(key, { oid, size, manifest });
    this.newFiles++;
    return this.packs.add(ENTRY_FILE, oid, manifest);
  }

  /**
   * Stores a git object (content without the loose header) unless present; `expected`, when
   * given, is the id it must hash to. Returns its id.
   */
  async addGitObject(type: GitType, content: Uint8Array, expected?: string, cache: object = {}): Promise<string> {
    if (expected && (await hasObject(this.target.gitdir, expected, cache))) return expected;
    const written = await git.writeObject({ fs: gitFs, gitdir: this.target.gitdir, type, object: content, format: 'content' });
    if (expected && written !== expected) throw new MstoreError('ECORRUPT', `git object ${expected} hashes to ${written}`);
    return written;
  }

  hasGitObject(id: string, cache: object = {}): Promise<boolean> {
    return hasObject(this.target.gitdir, id, cache);
  }

  /** Records sealed packs and the pending manifests they hold, in one index transaction. */
  private record(packs: PackInfo[], statUpdates?: Map<string, StatEntry | null>): void {
    const held: NewFile[] = [];
    for (const p of packs) {
      for (const e of p.entries) {
        if (e.type !== ENTRY_FILE) continue;
        const key = e.id.toString('hex');
        const f = this.pending.get(key);
        if (f) {
          held.push(f);
          this.pending.delete(key);
        }
      }
    }
    this.target.index.recordPacks(packs, held, statUpdates);
  }

  /** record(); when the index transaction fails, the packs go again: a failure leaves no pack the index does not name. */
  private async recordOrDrop(packs: PackInfo[], statUpdates?: Map<string, StatEntry | null>): Promise<void> {
    try {
      this.record(packs, statUpdates);
    } catch (e) {
      await this.packs.discard(packs);
      throw e;
    }
  }

  /**
   * Seals everything written so far and records it (with `statUpdates`, in the same
   * transaction). A background publish that failed fails this one.
   */
  async publish(statUpdates?: Map<string, StatEntry | null>): Promise<void> {
    await this.behind;
    this.unpublishedBytes = 0;
    await this.recordOrDrop(await this.packs.finish(), statUpdates);
  }

  /** Starts sealing and recording what was written so far while the caller keeps writing. */
  publishBehind(): void {
    this.unpublishedBytes = 0;
    this.behind = this.behind.then(async () => this.recordOrDrop(await this.packs.finish()));
    this.behind.catch(() => undefined);
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
        await this.recordOrDrop(await this.packs.finish());
        return;
      } catch {
        // fall through: drop what is left
      }
    }
    await this.packs.abort();
  }
}
