/**
 * The object stream that carries chunks, file manifests and git objects over HTTP bodies
 * (docs/protocol.md §2). Framing mirrors a pack's table entry, so one parser shape serves both:
 *
 *   "MSTWIRE\x01"                                          8 bytes
 *   per object: kind u8 | length u32 LE | id 32 bytes | data[length]
 *   end:        37 zero bytes (kind 0)
 *
 * kind 1 chunk (id sha256(data)), 2 file manifest (id the file's sha256; data a multiple of
 * 36 bytes), 3 git object (id sha1(data) in the first 20 bytes, 12 zero bytes after), 4 recipe
 * (id the file's sha256; data a canonical recipe record, proven by the receiver's rebuild). A
 * stream that stops before the end record is truncated, and the reader says so.
 */
import { createHash } from 'node:crypto';
import { MstoreError } from '../lib/errors.js';
import { MANIFEST_RECORD } from '../repo/index-db.js';
import { parseRecipe } from '../format/recipe.js';
import type { ObjectKind, WireObject } from './remote.js';
import type { BufferPool } from '../lib/buffer-pool.js';

export const WIRE_MAGIC = Buffer.from('MSTWIRE\x01', 'latin1');
export const WIRE_HEADER_BYTES = 37;
export const WIRE_CONTENT_TYPE = 'application/x-mstore-objects';
/** Largest object a reader accepts unless told otherwise: chunks are at most 8 MiB (docs/format.md). */
export const MAX_OBJECT_BYTES = 16 * 1024 * 1024;

const KIND_CODE: Record<ObjectKind, number> = { chunk: 1, file: 2, git: 3, recipe: 4 };
const CODE_KIND: Record<number, ObjectKind> = { 1: 'chunk', 2: 'file', 3: 'git', 4: 'recipe' };

export function encodeHeader(o: WireObject): Buffer {
  const h = Buffer.alloc(WIRE_HEADER_BYTES);
  h.writeUInt8(KIND_CODE[o.kind], 0);
  h.writeUInt32LE(o.data.length, 1);
  h.write(o.id, 5, 'hex');
  return h;
}

/** Frames objects as a byte stream (magic, headers and data, end record). */
export async function* encodeObjects(objects: AsyncIterable<WireObject>): AsyncGenerator<Buffer> {
  yield WIRE_MAGIC;
  for await (const o of objects) {
    yield encodeHeader(o);
    if (o.data.length) yield o.data;
  }
  yield Buffer.alloc(WIRE_HEADER_BYTES);
}

/** Throws unless `data` hashes to `id` (chunk, git) or is a well-formed manifest (file) or recipe record (recipe). */
export function checkObject(o: WireObject): void {
  if (o.kind === 'chunk') {
    if (createHash('sha256').update(o.data).digest('hex') !== o.id) throw new MstoreError('ECORRUPT', `chunk ${o.id}: its bytes do not hash to its id`);
  } else if (o.kind === 'git') {
    if (createHash('sha1').update(o.data).digest('hex') !== o.id) throw new MstoreError('ECORRUPT', `git object ${o.id}: its bytes do not hash to its id`);
    const nul = o.data.indexOf(0);
    const head = nul > 0 ? o.data.subarray(0, nul).toString('latin1') : '';
    const m = /^(blob|tree|commit|tag) ([0-9]+)$/.exec(head);
    if (!m || Number(m[2]) !== o.data.length - nul - 1) throw new MstoreError('ECORRUPT', `git object ${o.id}: not a loose object ('<type> <size>\\0<content>')`);
  } else if (o.kind === 'recipe') {
    parseRecipe(o.data, `recipe ${o.id}`);
  } else if (o.data.length === 0 || o.data.length % MANIFEST_RECORD !== 0) {
    throw new MstoreError('ECORRUPT', `file manifest ${o.id}: ${o.data.length} bytes is not a list of (chunk id, length) records`);
  }
}

/** A byte queue over an async source: take exactly n bytes, copying only across boundaries. */
class Reader {
  private bufs: Buffer[] = [];
  private have = 0;
  private readonly it: AsyncIterator<Uint8Array>;
  constructor(source: AsyncIterable<Uint8Array>) {
    this.it = source[Symbol.asyncIterator]();
  }
  /** Exactly n bytes (copied into `into` when given), or undefined if the source ends first. */
  async take(n: number, into?: Buffer): Promise<Buffer | undefined> {
    while (this.have < n) {
      const r = await this.it.next();
      if (r.done) return undefined;
      const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      if (b.length) {
        this.bufs.push(b);
        this.have += b.length;
      }
    }
    let out: Buffer;
    if (this.bufs[0].length >= n && !into) {
      out = this.bufs[0].subarray(0, n);
      if (this.bufs[0].length === n) this.bufs.shift();
      else this.bufs[0] = this.bufs[0].subarray(n);
    } else {
      out = into ?? Buffer.allocUnsafe(n);
      let o = 0;
      while (o < n) {
        const b = this.bufs[0];
        const k = Math.min(b.length, n - o);
        b.copy(out, o, 0, k);
        o += k;
        if (k === b.length) this.bufs.shift();
        else this.bufs[0] = b.subarray(k);
      }
    }
    this.have -= n;
    return out;
  }
  /** True if the source has bytes beyond what was taken. */
  async more(): Promise<boolean> {
    if (this.have > 0) return true;
    for (;;) {
      const r = await this.it.next();
      if (r.done) return false;
      if (r.value.byteLength) {
        this.bufs.push(Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength));
        this.have += r.value.byteLength;
        return true;
      }
    }
  }
  async cancel(): Promise<void> {
    await this.it.return?.();
  }
}

export interface DecodeOptions {
  maxObjectBytes?: number;
  /** For messages: where the stream comes from. */
  source?: string;
  /** Re-hash each object (default). Off only where the consumer checks anyway (StoreRemote.send does). */
  check?: boolean;
  /** Object data goes into buffers from this pool (the consumer hands them back). */
  pool?: BufferPool;
}

/** Parses and checks (checkObject) every object of a stream; throws on a bad or truncated stream. */
export async function* decodeObjects(body: AsyncIterable<Uint8Array>, opts: DecodeOptions = {}): AsyncGenerator<WireObject> {
  const max = opts.maxObjectBytes ?? MAX_OBJECT_BYTES;
  const from = opts.source ? ` from ${opts.source}` : '';
  const r = new Reader(body);
  try {
    const magic = await r.take(WIRE_MAGIC.length);
    if (!magic) throw new MstoreError('EREMOTE', `empty object stream${from}`);
    if (!magic.equals(WIRE_MAGIC)) throw new MstoreError('EBADINPUT', `not an mstore object stream${from} (bad magic)`);
    for (;;) {
      const h = await r.take(WIRE_HEADER_BYTES);
      if (!h) throw new MstoreError('EREMOTE', `object stream${from} ended early (truncated)`);
      const code = h.readUInt8(0);
      const length = h.readUInt32LE(1);
      if (code === 0) {
        if (length !== 0 || h.some((b) => b !== 0)) throw new MstoreError('EBADINPUT', `object stream${from}: malformed end record`);
        if (await r.more()) throw new MstoreError('EBADINPUT', `object stream${from}: bytes after the end record`);
        return;
      }
      const kind = CODE_KIND[code];
      if (!kind) throw new MstoreError('EBADINPUT', `object stream${from}: unknown object kind ${code}`);
      if (length > max) throw new MstoreError('EBADINPUT', `object stream${from}: a ${kind} of ${length} bytes is over the ${max}-byte limit`);
      const id = kind === 'git' ? h.subarray(5, 25).toString('hex') : h.subarray(5, 37).toString('hex');
      if (kind === 'git' && h.subarray(25, 37).some((b) => b !== 0)) throw new MstoreError('EBADINPUT', `object stream${from}: git object id ${id} is not padded with zeros`);
      const data = length ? await r.take(length, opts.pool?.get(length)) : Buffer.alloc(0);
      if (!data) throw new MstoreError('EREMOTE', `object stream${from} ended early inside ${kind} ${id} (truncated)`);
      const o: WireObject = { kind, id, data };
      if (opts.check !== false) checkObject(o);
      yield o;
    }
  } finally {
    await r.cancel().catch(() => undefined);
  }
}
