/**
 * File content in chunks: ingest (file, or bytes handed over in order -> chunks in packs +
 * manifest). It streams through a few fixed shared-memory slots (content-slots.ts), so memory
 * does not grow with file size, and hashes the whole file on a second core (ParallelHasher)
 * while this thread hashes chunks and the thread pool does the I/O. Reading content back is
 * content-reader.ts.
 */
import type { FileHandle } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { MstoreError } from '../lib/errors.js';
import { sha256, type HashJob, type ParallelHasher } from '../lib/hashing.js';
import { readStable, readWhole } from '../lib/stable-read.js';
import { FastCdcChunker, PlannedChunker, type Chunker, type CdcParams } from '../format/chunker.js';
import { readSafetensorsHeader, chunkCuts, type SafetensorsHeader } from '../format/safetensors.js';
import type { ObjectSink } from './object-sink.js';
import { encodeManifest, type ManifestChunk, type StatEntry } from './index-db.js';
import { SLOT_BYTES, SlotPool, type Slot } from './content-slots.js';

export interface ChunkingConfig {
  /** Fixed piece size inside big tensors and other planned regions. */
  pieceBytes: number;
  cdc: CdcParams;
  /** Files up to this size are one chunk, hashed on this thread. */
  singleChunkBytes: number;
  packTargetBytes: number;
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

  /** `replaceRecipe`: bytes of content the store keeps as a recipe replace it (materialize). */
  private addFile(oid: Buffer, size: number, chunks: ManifestChunk[], replaceRecipe = false): void {
    this.sink.addFile(oid, size, encodeManifest(chunks), { replaceRecipe })?.catch(() => undefined);
  }

  /**
   * Stores one file's content; `display` names it in errors. The file is read as one snapshot
   * (src/lib/stable-read.ts): a read during which it changed is discarded and repeated (its
   * chunks stay unreferenced until gc), and its manifest is recorded only for a stable read.
   */
  async ingest(file: string, display: string, onBytes?: BytesCallback): Promise<IngestResult & { stat: BigIntStats }> {
    const { value: r, stat } = await readStable(file, display, async (fh, size) => {
      if (size <= this.cfg.singleChunkBytes) return this.readSmall(fh, size, display);
      let header: SafetensorsHeader | undefined;
      let warning: string | undefined;
      if (file.endsWith('.safetensors')) {
        try {
          header = await readSafetensorsHeader(fh, size);
        } catch (e) {
          warning = `${display} is not valid safetensors (${(e as Error).message}); stored with content-defined chunks`;
        }
      }
      const chunking: IngestResult['chunking'] = header ? 'safetensors' : 'cdc';
      return { ...(await this.ingestStream(fh, size, display, this.chunker(size, header), onBytes)), size, chunking, warning };
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
   * Where content of `size` bytes is cut, the same for a file and a stream of the same bytes: a
   * small one is one chunk, a safetensors file at its tensors (`header`), anything else by content.
   */
  private chunker(size: number, header?: SafetensorsHeader): Chunker {
    if (size <= this.cfg.singleChunkBytes) return new PlannedChunker([size]);
    return header ? new PlannedChunker(chunkCuts(header, size, this.cfg.pieceBytes)) : new FastCdcChunker(this.cfg.cdc);
  }

  /**
   * Stores content of a known size that a producer hands over in order (the merge's output,
   * consolidate): `write` takes each piece before it resolves, `end` records the file. It is
   * cut as ingest() cuts a file: a safetensors file by `header` (the file's own, which the
   * producer writes first), anything else by content (FastCDC). A stream that does not end, or
   * ends short, records no file manifest (its chunks, like any unreferenced chunk, are published
   * with the writer's next finish() and left to gc). One stream at a time per writer: a stream's
   * carry lives in a slot the next one may take.
   */
  stream(size: number, display: string, header?: SafetensorsHeader, onBytes?: BytesCallback, opts: { replaceRecipe?: boolean } = {}): ContentOut {
    const stream = new ContentStream(this.pool, this.hasher.begin(size), size, display, this.chunker(size, header), (slot, data, id) => this.addChunk(slot, data, id), onBytes);
    return {
      write: (bytes) => stream.write(bytes),
      end: async () => {
        const r = await stream.end();
        this.addFile(r.id, size, r.chunks, opts.replaceRecipe);
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

