/**
 * Reading stored content back (manifest -> verified bytes): materialise a file, check it,
 * or read ranges, streaming through the slots (content-slots.ts) with the whole file
 * re-hashed on a second core (ParallelHasher) while this thread does the I/O. Content kept as
 * its recipe (docs/format.md §18) is rebuilt by the reader's Rebuilder and checked the same way:
 * nothing reaches a caller as whole until its bytes hashed to the content id.
 */
import { createHash } from 'node:crypto';
import { unlink, chmod, type FileHandle } from 'node:fs/promises';
import { MstoreError } from '../lib/errors.js';
import { sha256, type ParallelHasher } from '../lib/hashing.js';
import { open, writeInPieces } from '../lib/fsutil.js';
import { packPath } from './pack.js';
import type { ManifestChunk, StoreIndex } from './index-db.js';
import { SLOT_BYTES, SlotPool, type Slot } from './content-slots.js';
import type { BytesCallback } from './content.js';
import { parseRecipe } from '../format/recipe.js';

/** Pieces of a recipe's rebuild a range read holds before the rebuild waits for its consumer. */
const QUEUED_PIECES = 4;

/** What a rebuild fills a slot with before it hashes and writes it: a message and a write per 1 MiB merge block cost more than the copy. */
const REBUILD_SLOT_BYTES = 4 * 1024 * 1024;

/** Background fdatasync cadence for materialised files. */
const SYNC_EVERY = 64 * 1024 * 1024;

/** Keeps pack file handles open across the chunks of one checkout. */
class PackFiles {
  private readonly open = new Map<string, Promise<FileHandle>>();
  constructor(private readonly packsDir: string) {}
  get(id: string): Promise<FileHandle> {
    let fh = this.open.get(id);
    if (!fh) {
      fh = open(packPath(this.packsDir, id), 'r');
      this.open.set(id, fh);
    }
    return fh;
  }
  async close(): Promise<void> {
    for (const p of this.open.values()) await (await p.catch(() => undefined))?.close();
    this.open.clear();
  }
}

/**
 * Rebuilds content kept as a recipe: writes its bytes in order to `write` and resolves only when
 * they hashed to `oid`, or throws naming `display` (a recipe of a merge kernel this mstore does
 * not implement names the version it needs). With `digest`, the caller hashes what `write` gets
 * (on its hash worker) and publishes nothing before this resolves: the rebuild then leaves the
 * proof of its inputs' chunks to that hash, as a stored file's hash proves its chunks. Implemented
 * in ops/recipe.ts (the merge is above repo); readers that can meet recipes are made there (ops'
 * openReader).
 */
export interface Rebuilder {
  rebuild(reader: ContentReader, oid: string, record: Buffer, display: string, write: (bytes: Uint8Array) => Promise<void> | void, digest?: () => Promise<string>): Promise<void>;
  close(): Promise<void>;
}

/** How content is held: in chunks (a manifest), or as its recipe record. */
export type StoredForm = { kind: 'chunks'; size: number; chunks: ManifestChunk[] } | { kind: 'recipe'; size: number; record: Buffer };

interface ReadRun {
  pack: string;
  offset: number;
  chunks: ManifestChunk[];
  bytes: number;
}

export class ContentReader {
  private readonly pool = new SlotPool();
  private readonly packFiles: PackFiles;

  /** Recipe content proven whole (by oid and record): a range of it is rebuilt to its end only. */
  private readonly proven: Set<string>;
  /** Content its readers proved whole through this reader, by oid and manifest (ops' StoredSource): each proven once. */
  readonly wholeProven = new Set<string>();
  /** Where a range read of recipe content left its rebuild (recipeRange). */
  private cursor: { oid: string; pieces: AsyncGenerator<Buffer>; at: number; piece: Buffer } | undefined;

  constructor(
    private readonly index: StoreIndex,
    private readonly hasher: ParallelHasher,
    packsDir: string,
    private readonly rebuilder?: Rebuilder,
    /** Shared by the readers of one store in a process (a server's requests): a proof is made once. */
    proven: Set<string> = new Set(),
  ) {
    this.packFiles = new PackFiles(packsDir);
    this.proven = proven;
  }

  /** How the store holds `oid`, or EMISSING naming `display`. */
  form(oid: string, display: string): StoredForm {
    const key = Buffer.from(oid, 'hex');
    const f = this.index.file(key);
    if (f) return { kind: 'chunks', ...f };
    const record = this.index.recipe(key);
    if (record) return { kind: 'recipe', size: recipeSize(record, display), record };
    throw new MstoreError('EMISSING', `${display}: content ${oid} is not in the store (missing file manifest)`);
  }

  /**
   * Rebuilds recipe content into `write` through the slots (bounded memory, as for chunks), each
   * slot filled before it is written and hashed to `oid` on the hash worker; resolves once the
   * bytes hashed to `oid` (`write` publishes nothing before: see Rebuilder's `digest`).
   */
  private async rebuild(oid: string, record: Buffer, size: number, display: string, write: (data: Buffer, slot: Slot) => void): Promise<void> {
    const job = this.hasher.begin(size);
    // Held untracked across the merge's blocks: a reader runs one read() at a time (checkout, verify
    // and export read file after file), or the round robin could hand the slot out twice.
    let slot: Slot | undefined;
    let filled = 0;
    const flush = (): void => {
      if (slot && filled) {
        slot.track(job.update(slot.sab, 0, filled));
        write(slot.buf.subarray(0, filled), slot);
      }
      slot = undefined;
    };
    const digest = async (): Promise<string> => {
      flush();
      return job.digest();
    };
    try {
      await this.rebuilderFor(oid, display).rebuild(
        this,
        oid,
        record,
        display,
        async (bytes) => {
          for (let o = 0; o < bytes.length; ) {
            if (!slot) {
              slot = await this.pool.acquire(REBUILD_SLOT_BYTES);
              filled = 0;
            }
            const n = Math.min(REBUILD_SLOT_BYTES - filled, bytes.length - o);
            slot.buf.set(bytes.subarray(o, o + n), filled);
            filled += n;
            o += n;
            if (filled === REBUILD_SLOT_BYTES) flush();
          }
        },
        digest,
      );
      flush(); // nothing left behind, should a rebuilder have proven its bytes without `digest`
    } catch (e) {
      // The rebuild's own error, not a write it left in flight that failed after it.
      await this.pool.drainAll().catch(() => undefined);
      throw e;
    }
    await this.pool.drainAll();
  }

  /** Chunk reads grouped into runs that are contiguous in one pack, at most one slot each. */
  private plan(oid: string, display: string): { size: number; runs: ReadRun[] } {
    const f = this.manifest(oid, display);
    const runs: ReadRun[] = [];
    let cur: ReadRun | undefined;
    for (const c of f.chunks) {
      const loc = this.index.chunk(c.id);
      if (!loc) throw new MstoreError('EMISSING', `${display}: chunk ${c.id.toString('hex')} is missing from the store`);
      if (loc.length !== c.length) {
        throw new MstoreError('ECORRUPT', `${display}: chunk ${c.id.toString('hex')} has length ${loc.length} in the index, ${c.length} in the manifest`);
      }
      if (cur && cur.pack === loc.pack && cur.offset + cur.bytes === loc.offset && cur.bytes + c.length <= SLOT_BYTES) {
        cur.chunks.push(c);
        cur.bytes += c.length;
      } else {
        cur = { pack: loc.pack, offset: loc.offset, chunks: [c], bytes: c.length };
        runs.push(cur);
      }
    }
    const total = f.chunks.reduce((a, c) => a + c.length, 0);
    if (total !== f.size) throw new MstoreError('ECORRUPT', `${display}: manifest of ${oid} adds up to ${total} bytes, expected ${f.size}`);
    return { size: f.size, runs };
  }

  /**
   * Streams content into `sink` in order; resolves only if the whole re-hashes to `oid`,
   * else throws naming the file and the damaged chunk. Callers write to a temporary name
   * and publish only after this resolves.
   */
  async read(oid: string, display: string, sink: (data: Buffer, slot: Slot) => void, onBytes?: BytesCallback): Promise<number> {
    const form = this.form(oid, display);
    if (form.kind === 'recipe') {
      await this.rebuild(oid, form.record, form.size, display, (data, slot) => {
        sink(data, slot);
        onBytes?.(data.length);
      });
      return form.size;
    }
    const { size, runs } = this.plan(oid, display);
    const job = this.hasher.begin(size);
    for (const run of runs) {
      const slot = await this.pool.acquire(run.bytes);
      const fh = await this.packFiles.get(run.pack).catch((e: NodeJS.ErrnoException) => {
        throw new MstoreError('EMISSING', `${display}: pack ${run.pack} cannot be opened (${e.code ?? e.message})`);
      });
      let got = 0;
      while (got < run.bytes) {
        const { bytesRead } = await fh.read(slot.buf, got, run.bytes - got, run.offset + got);
        if (bytesRead === 0) throw new MstoreError('ECORRUPT', `${display}: pack ${run.pack} is truncated`);
        got += bytesRead;
      }
      slot.track(job.update(slot.sab, 0, run.bytes));
      sink(slot.buf.subarray(0, run.bytes), slot);
      onBytes?.(run.bytes);
    }
    await this.pool.drainAll();
    const digest = await job.digest();
    if (digest !== oid) throw await this.damage(runs, display, digest, oid);
    return size;
  }

  /**
   * The whole-file sha256 (on the worker) verifies every byte; chunk ids are checked only
   * when it fails, to name the damaged chunk and pack. This keeps checkout at one hash pass
   * per byte instead of two.
   */
  private async damage(runs: ReadRun[], display: string, digest: string, oid: string): Promise<MstoreError> {
    for (const run of runs) {
      const fh = await this.packFiles.get(run.pack);
      const buf = Buffer.alloc(run.bytes);
      await fh.read(buf, 0, run.bytes, run.offset);
      let o = 0;
      for (const c of run.chunks) {
        if (!sha256(buf.subarray(o, o + c.length)).equals(c.id)) {
          return new MstoreError('ECORRUPT', `${display}: chunk ${c.id.toString('hex')} in pack ${run.pack} is damaged (hash mismatch)`);
        }
        o += c.length;
      }
    }
    return new MstoreError('ECORRUPT', `${display}: content hashes to ${digest}, expected ${oid}`);
  }

  /**
   * Re-reads a file's content and checks it without writing it anywhere. The whole file is
   * re-hashed to `oid` (on the worker, above INLINE_HASH_BYTES) while the next run is read.
   * With `chunkIds`, this thread also re-hashes every chunk to its id in parallel (skipping
   * ids in `verified`); without, chunk ids are re-hashed only when the file fails, to name the
   * damaged chunks.
   * Throws only when a pack cannot be read.
   */
  async check(
    oid: string,
    verified: Set<string>,
    opts: { chunkIds?: boolean; onBytes?: BytesCallback } = {},
  ): Promise<{ digest: string; damaged: { chunk: string; pack: string }[] }> {
    const { size, runs } = this.plan(oid, oid);
    const job = this.hasher.begin(size);
    const damaged: { chunk: string; pack: string }[] = [];
    const hashChunks = (runs: ReadRun[], slot: Slot): void => {
      let o = 0;
      for (const run of runs) {
        for (const c of run.chunks) {
          const key = c.id.toString('hex');
          if (!verified.has(key)) {
            if (sha256(slot.buf.subarray(o, o + c.length)).equals(c.id)) verified.add(key);
            else damaged.push({ chunk: key, pack: run.pack });
          }
          o += c.length;
        }
      }
    };
    await this.eachSlotful(runs, (group, slot, bytes) => {
      slot.track(job.update(slot.sab, 0, bytes));
      if (opts.chunkIds) hashChunks(group, slot);
      opts.onBytes?.(bytes);
    });
    const digest = await job.digest();
    if (digest !== oid && !opts.chunkIds) await this.eachSlotful(runs, hashChunks);
    return { digest, damaged };
  }

  /**
   * Reads runs in file order, as many back to back into one slot as fit, every run of a slot
   * read at once, the next slot while `fn` handles the current one. A version's adapter that
   * differs a little from the last one is dozens of short runs across packs: one read and one
   * hash message each, in turn, left the hash workers waiting on this thread.
   */
  private async eachSlotful(runs: ReadRun[], fn: (group: ReadRun[], slot: Slot, bytes: number) => void): Promise<void> {
    const groups: { runs: ReadRun[]; bytes: number }[] = [];
    for (const run of runs) {
      const last = groups[groups.length - 1];
      if (last && last.bytes + run.bytes <= SLOT_BYTES) {
        last.runs.push(run);
        last.bytes += run.bytes;
      } else groups.push({ runs: [run], bytes: run.bytes });
    }
    const readRun = async (run: ReadRun, slot: Slot, at: number): Promise<void> => {
      const fh = await this.packFiles.get(run.pack);
      let got = 0;
      while (got < run.bytes) {
        const { bytesRead } = await fh.read(slot.buf, at + got, run.bytes - got, run.offset + got);
        if (bytesRead === 0) throw new MstoreError('ECORRUPT', `pack ${run.pack} is truncated`);
        got += bytesRead;
      }
    };
    const load = async (group: { runs: ReadRun[]; bytes: number }): Promise<Slot> => {
      const slot = await this.pool.acquire(group.bytes);
      let at = 0;
      const reads: Promise<void>[] = [];
      for (const run of group.runs) {
        reads.push(readRun(run, slot, at));
        at += run.bytes;
      }
      // Every read settles before a failure is thrown: none may still write into the slot after.
      const failed = (await Promise.allSettled(reads)).find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
      return slot;
    };
    const quietly = <T>(p: Promise<T>): Promise<T> => {
      p.catch(() => undefined);
      return p;
    };
    let next = groups.length ? quietly(load(groups[0])) : undefined;
    for (let i = 0; i < groups.length; i++) {
      const slot = await next!;
      next = i + 1 < groups.length ? quietly(load(groups[i + 1])) : undefined;
      fn(groups[i].runs, slot, groups[i].bytes);
    }
    await this.pool.drainAll();
  }

  /**
   * Bytes [start, start + length) of stored content, read from the chunks that overlap the
   * range; each chunk read is re-hashed to its id (every read is verified).
   */
  async readRange(oid: string, start: number, length: number, display = oid): Promise<Buffer> {
    const form = this.form(oid, display);
    if (form.kind === 'recipe') return this.recipeRange(oid, form.record, form.size, start, length, display);
    const parts: Buffer[] = [];
    for await (const s of this.slices(oid, start, start + length, display)) parts.push(s);
    return Buffer.concat(parts);
  }

  /**
   * Bytes [start, end) of stored content as slices in order. Each chunk that overlaps the range
   * is read once and re-hashed to its id before any of it is yielded. When the range is the
   * whole file, its sha256 is checked as well, and a mismatch (a damaged manifest) throws after
   * the last slice: a server streaming it then cuts the response, so no client ever holds a
   * complete wrong file.
   */
  async *slices(oid: string, start: number, end: number, display = oid): AsyncGenerator<Buffer> {
    const form = this.form(oid, display);
    if (form.kind === 'recipe') {
      yield* this.recipeSlices(oid, form.record, form.size, start, end, display);
      return;
    }
    const f = this.manifest(oid, display);
    const stop = Math.min(end, f.size);
    const whole = start <= 0 && stop === f.size ? createHash('sha256') : undefined;
    let pos = 0;
    for (const c of f.chunks) {
      const cEnd = pos + c.length;
      if (cEnd > start && pos < stop) {
        const buf = await this.chunk(c, display);
        whole?.update(buf);
        yield buf.subarray(Math.max(start, pos) - pos, Math.min(stop, cEnd) - pos);
      }
      pos = cEnd;
      if (pos >= stop) break;
    }
    const digest = whole?.digest('hex');
    if (digest !== undefined && digest !== oid) throw new MstoreError('ECORRUPT', `${display}: content hashes to ${digest}, expected ${oid} (file manifest damaged)`);
  }

  /**
   * slices() of recipe content: rebuilt from the start (a merge writes front to back), the range
   * yielded as it passes. Nothing unverified reaches the caller as whole: a range short of the
   * whole file is yielded only from content proven whole (a first rebuild proves it, remembered by
   * `proven`; the rebuild then stops at the range's end), and a whole-file read holds its last
   * piece back until the bytes hashed to the oid (a failure cuts it short, as a server's response).
   */
  private async *recipeSlices(oid: string, record: Buffer, size: number, start: number, end: number, display: string): AsyncGenerator<Buffer> {
    const rebuilder = this.rebuilderFor(oid, display);
    const stop = Math.min(end, size);
    const whole = start <= 0 && stop === size;
    const key = provenKey(oid, record);
    if (!whole && !this.proven.has(key)) {
      await rebuilder.rebuild(this, oid, record, display, () => undefined);
      this.proven.add(key);
    }
    // The rebuild pushes, this generator pulls: the rebuild waits while a few pieces are queued.
    const queue: Buffer[] = [];
    let wake: (() => void) | undefined;
    let resume: (() => void) | undefined;
    let done = false;
    let abandoned = false;
    let failed: unknown;
    let pos = 0;
    const STOP = new Error('range read');
    const producer = rebuilder
      .rebuild(this, oid, record, display, async (bytes) => {
        if (abandoned) throw new Error('the reader stopped');
        const from = pos;
        pos += bytes.length;
        const a = Math.max(start, from);
        const b = Math.min(stop, pos);
        if (a < b) queue.push(Buffer.from(bytes.subarray(a - from, b - from)));
        wake?.();
        // Proven content: the rest of a partial range is not rebuilt.
        if (!whole && pos >= stop) throw STOP;
        while (queue.length >= QUEUED_PIECES && !abandoned) await new Promise<void>((r) => (resume = r));
      })
      .then(
        () => void (done = true),
        (e: unknown) => void ((failed = e === STOP ? undefined : e), (done = true)),
      )
      .finally(() => wake?.());
    try {
      for (;;) {
        // A whole file's last piece waits for the hash check; a proven range's does not.
        if (queue.length > (whole && !done ? 1 : 0)) {
          if (done && failed !== undefined) break;
          yield queue.shift()!;
          resume?.();
          continue;
        }
        if (done) break;
        await new Promise<void>((r) => (wake = r));
      }
    } finally {
      // A consumer that stopped early (a closed response) stops the rebuild at its next piece.
      abandoned = true;
      resume?.();
      await producer;
    }
    if (failed !== undefined) throw failed;
    if (whole) this.proven.add(key);
  }

  /**
   * A range of recipe content through a cursor: reads at ascending offsets (a tensor diff in file
   * order) continue one rebuild instead of each rebuilding from the start. One cursor per reader
   * (one paused rebuild: memory stays bounded); the content is proven whole first, so every byte
   * returned is verified.
   */
  private async recipeRange(oid: string, record: Buffer, size: number, start: number, length: number, display: string): Promise<Buffer> {
    const end = Math.min(start + length, size);
    if (start >= end) return Buffer.alloc(0);
    const key = provenKey(oid, record);
    if (!this.proven.has(key)) {
      await this.closeCursor();
      await this.rebuilderFor(oid, display).rebuild(this, oid, record, display, () => undefined);
      this.proven.add(key);
    }
    let c = this.cursor;
    if (!c || c.oid !== oid || c.at > start) {
      await this.closeCursor();
      c = this.cursor = { oid, pieces: this.recipeSlices(oid, record, size, 0, size, display), at: 0, piece: Buffer.alloc(0) };
    }
    const out = Buffer.alloc(end - start);
    try {
      for (;;) {
        const from = Math.max(start, c.at);
        const to = Math.min(end, c.at + c.piece.length);
        if (from < to) c.piece.copy(out, from - start, from - c.at, to - c.at);
        if (c.at + c.piece.length >= end) return out;
        c.at += c.piece.length;
        const next = await c.pieces.next();
        if (next.done) throw new MstoreError('ECORRUPT', `${display}: its rebuild ended at byte ${c.at} of ${size}`);
        c.piece = next.value;
      }
    } catch (e) {
      this.cursor = undefined;
      throw e;
    }
  }

  private async closeCursor(): Promise<void> {
    const c = this.cursor;
    this.cursor = undefined;
    await c?.pieces.return(undefined).catch(() => undefined);
  }

  private rebuilderFor(oid: string, display: string): Rebuilder {
    if (!this.rebuilder) throw new MstoreError('EMISSING', `${display}: content ${oid} is kept as a recipe, which this reader cannot rebuild`);
    return this.rebuilder;
  }

  /** One chunk of a manifest, read from its pack and re-hashed to its id; `display` names the file in errors. */
  async chunk(c: ManifestChunk, display: string): Promise<Buffer> {
    const loc = this.index.chunk(c.id);
    if (!loc) throw new MstoreError('EMISSING', `${display}: chunk ${c.id.toString('hex')} is missing from the store`);
    const fh = await this.packFiles.get(loc.pack);
    const buf = Buffer.alloc(c.length);
    const { bytesRead } = await fh.read(buf, 0, c.length, loc.offset);
    if (bytesRead !== c.length || !sha256(buf).equals(c.id)) {
      throw new MstoreError('ECORRUPT', `${display}: chunk ${c.id.toString('hex')} in pack ${loc.pack} is damaged (hash mismatch)`);
    }
    return buf;
  }

  /**
   * One chunk of a manifest read from its pack without re-hashing it: only for a reader whose
   * output is hashed to its content id before anything is published (that hash proves every
   * byte it read, as a stored file's proves its chunks; chunk() names the damage after).
   */
  async chunkUnchecked(c: ManifestChunk, display: string): Promise<Buffer> {
    const loc = this.index.chunk(c.id);
    if (!loc) throw new MstoreError('EMISSING', `${display}: chunk ${c.id.toString('hex')} is missing from the store`);
    const fh = await this.packFiles.get(loc.pack);
    const buf = Buffer.allocUnsafe(c.length);
    let got = 0;
    while (got < c.length) {
      const { bytesRead } = await fh.read(buf, got, c.length - got, loc.offset + got);
      if (bytesRead === 0) throw new MstoreError('ECORRUPT', `${display}: chunk ${c.id.toString('hex')} in pack ${loc.pack} is damaged (the pack ends inside it)`);
      got += bytesRead;
    }
    return buf;
  }

  /** The manifest of stored content: its size and chunks in order. */
  manifest(oid: string, display: string): { size: number; chunks: ManifestChunk[] } {
    const f = this.index.file(Buffer.from(oid, 'hex'));
    if (!f) throw new MstoreError('EMISSING', `${display}: content ${oid} is not in the store (missing file manifest)`);
    return f;
  }

  /** Reads one chunk and checks its id; false when it does not re-hash to it. */
  async checkChunk(id: Buffer, loc: { pack: string; offset: number; length: number }): Promise<boolean> {
    const fh = await this.packFiles.get(loc.pack);
    const buf = Buffer.alloc(loc.length);
    const { bytesRead } = await fh.read(buf, 0, loc.length, loc.offset);
    return bytesRead === loc.length && sha256(buf).equals(id);
  }

  /**
   * Writes content to the new file `tmp` (a temporary name the caller chose beside its final
   * name, see fsutil's tmpName): verified while writing, fsynced, mode set. The caller renames
   * it into place (checkout does so only once every file of the version is written). On an
   * error `tmp` is gone; nothing partial is ever left.
   */
  async materializeTemp(oid: string, tmp: string, display: string, mode: number, onBytes?: BytesCallback): Promise<void> {
    const fh = await open(tmp, 'wx', mode);
    let ok = false;
    try {
      let pos = 0;
      let unsynced = 0;
      let syncing: Promise<void> | undefined;
      let syncFailed: unknown;
      await this.read(
        oid,
        display,
        (data, slot) => {
          const at = pos;
          pos += data.length;
          slot.track(
            writeInPieces(fh, data, at).then(() => {
              unsynced += data.length;
              if (unsynced >= SYNC_EVERY && !syncing) {
                unsynced = 0;
                // Kept, not lost (nor an unhandled rejection): a later fdatasync may succeed after
                // the kernel dropped the pages this one could not write.
                syncing = fh
                  .datasync()
                  .then(() => undefined, (e: unknown) => void (syncFailed ??= e))
                  .finally(() => (syncing = undefined));
              }
            }),
          );
        },
        onBytes,
      );
      await syncing;
      if (syncFailed !== undefined) throw syncFailed;
      await fh.datasync();
      await fh.close();
      await chmod(tmp, mode);
      ok = true;
    } finally {
      if (!ok) {
        await this.pool.drainAll().catch(() => undefined);
        await fh.close().catch(() => undefined);
        await unlink(tmp).catch(() => undefined);
      }
    }
  }

  async close(): Promise<void> {
    await this.closeCursor();
    await this.pool.drainAll().catch(() => undefined);
    await this.packFiles.close();
    await this.rebuilder?.close();
  }
}

/** What a proof of recipe content is remembered by: its oid and its record's hash (another record proves nothing). */
function provenKey(oid: string, record: Buffer): string {
  return `${oid}:${sha256(record).toString('hex')}`;
}

/** The size a recipe record names (it is parsed again, whole, by the rebuild). */
function recipeSize(record: Buffer, display: string): number {
  return parseRecipe(record, `${display} (its recipe in the index)`).size;
}
