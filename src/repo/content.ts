/**
 * File content in chunks: ingest (file -> chunks in packs + manifest) and materialise
 * (manifest -> verified bytes). Both stream through a few fixed shared-memory slots, so
 * memory does not grow with file size, and both hash the whole file on a second core
 * (ParallelHasher) while this thread hashes chunks and the thread pool does the I/O.
 */
import { createHash } from 'node:crypto';
import { unlink, chmod, type FileHandle } from 'node:fs/promises';
import { MstoreError } from '../lib/errors.js';
import { sha256, type HashJob, type ParallelHasher } from '../lib/hashing.js';
import { packPath } from './pack.js';
import type { ObjectSink } from './object-sink.js';
import { encodeManifest, type ManifestChunk, type StoreIndex, type StatEntry } from './index-db.js';
import { FastCdcChunker, PlannedChunker, type Chunker, type CdcParams } from '../format/chunker.js';
import { readSafetensorsHeader, chunkCuts, type SafetensorsHeader } from '../format/safetensors.js';
import { open, writeInPieces } from '../lib/fsutil.js';
import { readStable, readWhole } from '../lib/stable-read.js';
import type { BigIntStats } from 'node:fs';

export interface ChunkingConfig {
  /** Fixed piece size inside big tensors and other planned regions. */
  pieceBytes: number;
  cdc: CdcParams;
  /** Files up to this size are one chunk, hashed on this thread. */
  singleChunkBytes: number;
  packTargetBytes: number;
}

export const SLOT_BYTES = 16 * 1024 * 1024;
const SLOT_COUNT = 4;
/** Background fdatasync cadence for materialised files. */
const SYNC_EVERY = 64 * 1024 * 1024;

class Slot {
  sab: SharedArrayBuffer;
  buf: Buffer;
  private pending: Promise<unknown>[] = [];
  constructor(bytes: number) {
    this.sab = new SharedArrayBuffer(bytes);
    this.buf = Buffer.from(this.sab);
  }
  /** Holds at least `bytes` (only while nothing uses it: after drain, or new). */
  fit(bytes: number): void {
    if (this.buf.length >= bytes) return;
    this.sab = new SharedArrayBuffer(slotSize(bytes));
    this.buf = Buffer.from(this.sab);
  }
  track(p: Promise<unknown>): void {
    p.catch(() => undefined); // rejections surface through drain(), not as unhandled
    this.pending.push(p);
  }
  async drain(): Promise<void> {
    const p = this.pending;
    this.pending = [];
    await Promise.all(p);
  }
}

/** A slot's size for `bytes`: a power of two from 64 KiB, SLOT_BYTES for anything from 8 MiB up. */
function slotSize(bytes: number): number {
  if (bytes > SLOT_BYTES / 2) return Math.max(bytes, SLOT_BYTES);
  let n = 64 * 1024;
  while (n < bytes) n *= 2;
  return n;
}

/**
 * Round-robin pool: a slot is reused only after everything using it has settled. Slots are
 * allocated on first use, no larger than asked (a power of two up to SLOT_BYTES), and grown
 * when reused for more: 64 MiB of shared memory would cost a no-op commit a garbage
 * collection (V8 counts it as external memory pressure), and zeroing 16 MiB for each small
 * file a checkout reads cost more than reading it.
 */
class SlotPool {
  private readonly slots: Slot[] = [];
  private i = 0;
  /** A slot holding at least `bytes`, which nothing else uses until it is acquired again. */
  async acquire(bytes: number = SLOT_BYTES): Promise<Slot> {
    if (this.slots.length < SLOT_COUNT) {
      const fresh = new Slot(slotSize(bytes));
      this.slots.push(fresh);
      return fresh;
    }
    const s = this.slots[this.i];
    this.i = (this.i + 1) % this.slots.length;
    await s.drain();
    s.fit(bytes);
    return s;
  }
  async drainAll(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.drain()));
  }
}

export interface IngestResult {
  oid: string;
  size: number;
  /** Bytes of new chunk data this file added to packs. */
  newBytes: number;
  chunking: 'safetensors' | 'cdc' | 'single';
  /** Set when a .safetensors file failed validation and was stored with FastCDC. */
  warning?: string;
}

export type BytesCallback = (n: number) => void;

/** One read of a file: its id and chunks; `data` for a small file (one chunk, not yet written). */
interface ReadContent {
  id: Buffer;
  size: number;
  chunks: ManifestChunk[];
  newBytes: number;
  chunking: IngestResult['chunking'];
  warning?: string;
  data?: Buffer;
}

/** Content handed over in order: every byte once, then `end`. */
export interface ContentOut {
  /** Takes `bytes` (copies them) before it resolves. */
  write(bytes: Uint8Array): Promise<void>;
  /** The stored content's id, once every announced byte arrived. */
  end(): Promise<{ oid: string; size: number; newBytes: number }>;
}

/**
 * One file's content arriving in order, whoever reads or produces it: bytes land in a slot
 * and are hashed whole (ParallelHasher) as they land; once the slot is full or the file is
 * complete it is cut into chunks, each hashed to its id and handed to the sink, and the bytes
 * after the last cut carry into the next slot. Memory: the writer's slots, whatever the size.
 */
class ContentStream {
  private readonly chunks: ManifestChunk[] = [];
  private newBytes = 0;
  /** Bytes landed so far. */
  received = 0;
  private slot: Slot | undefined;
  private filled = 0;
  private cap = 0;
  private prev: Slot | undefined;
  private carryOff = 0;
  private carry = 0;

  constructor(
    private readonly pool: SlotPool,
    private readonly job: HashJob,
    private readonly size: number,
    private readonly display: string,
    private readonly chunker: Chunker,
    private readonly addChunk: (slot: Slot, data: Uint8Array, id: Buffer) => number,
    private readonly onBytes?: BytesCallback,
  ) {}

  /** Where the next bytes go (never empty while bytes are due): write into it, then call `landed`. */
  async room(): Promise<Buffer> {
    if (!this.slot) {
      const cap = Math.min(SLOT_BYTES, this.carry + (this.size - this.received));
      const slot = await this.pool.acquire(cap);
      if (this.carry) this.prev!.buf.copy(slot.buf, 0, this.carryOff, this.carryOff + this.carry);
      this.slot = slot;
      this.filled = this.carry;
      this.cap = cap;
    }
    return this.slot.buf.subarray(this.filled, this.cap);
  }

  /** `n` bytes were written at the start of `room()`. */
  landed(n: number): void {
    const slot = this.slot!;
    slot.track(this.job.update(slot.sab, this.filled, n));
    this.onBytes?.(n);
    this.filled += n;
    this.received += n;
    if (this.filled === this.cap) this.cut(slot);
  }

  private cut(slot: Slot): void {
    const eof = this.received >= this.size;
    let off = 0;
    for (;;) {
      const len = this.chunker.next(slot.buf, off, this.filled, eof);
      if (len === 0) break;
      const data = slot.buf.subarray(off, off + len);
      const id = sha256(data);
      this.chunks.push({ id, length: len });
      this.newBytes += this.addChunk(slot, data, id);
      off += len;
    }
    // A chunker cuts within SLOT_BYTES, and everything at the end: anything else is a bug.
    if (eof ? off !== this.filled : off === 0) throw new Error(`internal: the chunker made no progress in ${this.display}`);
    this.carry = this.filled - off;
    this.carryOff = off;
    this.prev = slot;
    this.slot = undefined;
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.received + bytes.length > this.size) throw new Error(`internal: ${this.display} got more than the ${this.size} bytes announced`);
    for (let done = 0; done < bytes.length; ) {
      const room = await this.room();
      const n = Math.min(room.length, bytes.length - done);
      room.set(bytes.subarray(done, done + n));
      done += n;
      this.landed(n);
    }
  }

  async end(): Promise<{ id: Buffer; chunks: ManifestChunk[]; newBytes: number }> {
    if (this.received !== this.size) throw new Error(`internal: ${this.display} ended after ${this.received} of the ${this.size} bytes announced`);
    await this.pool.drainAll();
    return { id: Buffer.from(await this.job.digest(), 'hex'), chunks: this.chunks, newBytes: this.newBytes };
  }
}

export class ContentWriter {
  private readonly pool = new SlotPool();

  constructor(
    private readonly sink: ObjectSink,
    private readonly hasher: ParallelHasher,
    private readonly cfg: ChunkingConfig,
  ) {}

  /** Bytes of new chunk data stored so far. */
  get newBytes(): number {
    return this.sink.newBytes;
  }

  private addChunk(slot: Slot | undefined, data: Uint8Array, id: Buffer): number {
    const w = this.sink.addChunk(id, data);
    if (!w) return 0;
    if (slot) slot.track(w);
    else w.catch(() => undefined); // a failed write surfaces again through publish()
    return data.length;
  }

  private addFile(oid: Buffer, size: number, chunks: ManifestChunk[]): void {
    this.sink.addFile(oid, size, encodeManifest(chunks))?.catch(() => undefined);
  }

  /**
   * Stores one file's content; `display` names it in errors. The file is read as one snapshot
   * (src/lib/stable-read.ts): a read during which it changed is discarded and repeated (its
   * chunks stay unreferenced until gc), and its manifest is recorded only for a stable read.
   */
  async ingest(file: string, display: string, onBytes?: BytesCallback): Promise<IngestResult & { stat: BigIntStats }> {
    const { value: r, stat } = await readStable(file, display, async (fh, size) => {
      if (size <= this.cfg.singleChunkBytes) return this.readSmall(fh, size, display);
      let chunker: Chunker;
      let chunking: IngestResult['chunking'] = 'cdc';
      let warning: string | undefined;
      if (file.endsWith('.safetensors')) {
        try {
          const h = await readSafetensorsHeader(fh, size);
          chunker = new PlannedChunker(chunkCuts(h, size, this.cfg.pieceBytes));
          chunking = 'safetensors';
        } catch (e) {
          warning = `${display} is not valid safetensors (${(e as Error).message}); stored with content-defined chunks`;
          chunker = new FastCdcChunker(this.cfg.cdc);
        }
      } else {
        chunker = new FastCdcChunker(this.cfg.cdc);
      }
      return { ...(await this.ingestStream(fh, size, display, chunker, onBytes)), size, chunking, warning };
    });
    let newBytes = r.newBytes;
    if (r.data) {
      // A small file's one chunk is written only once its read is known to be whole.
      newBytes = r.size > 0 ? this.addChunk(undefined, r.data, r.id) : 0;
      onBytes?.(r.size);
    }
    this.addFile(r.id, r.size, r.chunks);
    return { oid: r.id.toString('hex'), size: r.size, newBytes, chunking: r.chunking, warning: r.warning, stat };
  }

  private async readSmall(fh: FileHandle, size: number, display: string): Promise<ReadContent> {
    const data = await readWhole(fh, size);
    if (data.length !== size) throw new MstoreError('EBADINPUT', `${display} shrank while it was being stored; commit again`, { what: display });
    const id = sha256(data);
    return { id, size, chunks: size > 0 ? [{ id, length: size }] : [], newBytes: 0, chunking: 'single', data };
  }

  private async ingestStream(
    fh: FileHandle,
    size: number,
    display: string,
    chunker: Chunker,
    onBytes?: BytesCallback,
  ): Promise<{ id: Buffer; chunks: ManifestChunk[]; newBytes: number }> {
    const stream = new ContentStream(this.pool, this.hasher.begin(size), size, display, chunker, (slot, data, id) => this.addChunk(slot, data, id), onBytes);
    while (stream.received < size) {
      const room = await stream.room();
      const { bytesRead } = await fh.read(room, 0, room.length, stream.received);
      if (bytesRead === 0) throw new MstoreError('EBADINPUT', `${display} shrank while it was being stored; commit again`, { what: display });
      stream.landed(bytesRead);
    }
    return stream.end();
  }

  /**
   * Stores content of a known size that a producer hands over in order (the merge's output,
   * consolidate): `write` takes each piece before it resolves, `end` records the file. It is
   * cut as ingest() cuts a file: a safetensors file by `header` (the file's own, which the
   * producer writes first), anything else by content (FastCDC). Nothing is recorded for a stream that does not end,
   * or ends short.
   */
  stream(size: number, display: string, header?: SafetensorsHeader, onBytes?: BytesCallback): ContentOut {
    // The cuts a file of the same bytes gets from ingest(): a small file is one chunk.
    const chunker =
      size <= this.cfg.singleChunkBytes
        ? new PlannedChunker([size])
        : header
          ? new PlannedChunker(chunkCuts(header, size, this.cfg.pieceBytes))
          : new FastCdcChunker(this.cfg.cdc);
    const stream = new ContentStream(this.pool, this.hasher.begin(size), size, display, chunker, (slot, data, id) => this.addChunk(slot, data, id), onBytes);
    return {
      write: (bytes) => stream.write(bytes),
      end: async () => {
        const r = await stream.end();
        this.addFile(r.id, size, r.chunks);
        return { oid: r.id.toString('hex'), size, newBytes: r.newBytes };
      },
    };
  }

  /** Seals packs (fsynced, renamed) then records them in the index in one transaction. */
  async finish(statUpdates?: Map<string, StatEntry | null>): Promise<void> {
    await this.pool.drainAll();
    await this.sink.publish(statUpdates);
  }

  async abort(): Promise<void> {
    await this.pool.drainAll().catch(() => undefined);
    await this.sink.abandon(false);
  }
}

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

interface ReadRun {
  pack: string;
  offset: number;
  chunks: ManifestChunk[];
  bytes: number;
}

export class ContentReader {
  private readonly pool = new SlotPool();
  private readonly packFiles: PackFiles;

  constructor(
    private readonly index: StoreIndex,
    private readonly hasher: ParallelHasher,
    packsDir: string,
  ) {
    this.packFiles = new PackFiles(packsDir);
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
    await this.pool.drainAll().catch(() => undefined);
    await this.packFiles.close();
  }
}
