/**
 * One git pack and its version-2 index, read (docs/format.md §2.3): finding an object by id,
 * an entry's header, its inflated bytes and delta base, and whether its stored bytes match the
 * CRC-32 the index holds; git's delta format. Small reads share a process-wide LRU of 64 KiB
 * blocks. Objects are assembled and re-hashed by GitObjects (git-objects.ts), which owns the
 * pack list.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { crc32, inflateSync } from 'node:zlib';
import type { GitType } from '../format/git-links.js';

export const PACK_TYPES: Record<number, GitType> = { 1: 'commit', 2: 'tree', 3: 'blob', 4: 'tag' };
const OFS_DELTA = 6;
const REF_DELTA = 7;
/** The first four bytes of a version-2 pack index. */
export const IDX_MAGIC = 0xff744f63;

const BLOCK = 64 * 1024;
/** 32 MiB of pack blocks per process. */
const MAX_BLOCKS = 512;
/** Pack blocks, least recently used first: `<pack file>:<block number>` -> bytes. */
const blocks = new Map<string, Buffer>();

/** A pack and its version-2 index, read once. */
export class Pack {
  private fd: number | undefined;
  private byOffset: Map<number, number> | undefined;
  /** Entry offsets in pack order, to know where each entry's bytes end. */
  private sorted: Float64Array | Uint32Array | undefined;
  readonly count: number;

  constructor(
    readonly packFile: string,
    private readonly idx: Buffer,
    private readonly packSize: number,
  ) {
    if (idx.length < 8 + 1024 + 40 || idx.readUInt32BE(0) !== IDX_MAGIC || idx.readUInt32BE(4) !== 2) throw new Error(`${path.basename(packFile, '.pack')}.idx is not a version 2 pack index`);
    this.count = idx.readUInt32BE(8 + 255 * 4);
    if (idx.length < 8 + 1024 + this.count * 28 + 40) throw new Error(`${path.basename(packFile, '.pack')}.idx is truncated`);
    // Opened now: a pack that a repack removes later stays readable through this descriptor.
    this.fd = openSync(packFile, 'r');
  }

  /** The position of `oid` (20 bytes) in the sorted name table, or -1. */
  find(oid: Buffer): number {
    const first = oid[0];
    let lo = first === 0 ? 0 : this.idx.readUInt32BE(8 + (first - 1) * 4);
    let hi = this.idx.readUInt32BE(8 + first * 4);
    const names = 8 + 1024;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = oid.compare(this.idx, names + mid * 20, names + mid * 20 + 20);
      if (c === 0) return mid;
      if (c < 0) hi = mid;
      else lo = mid + 1;
    }
    return -1;
  }

  /** The CRC-32 the index records for the entry at position `i` (of its stored bytes). */
  crcAt(i: number): number {
    return this.idx.readUInt32BE(8 + 1024 + this.count * 20 + i * 4);
  }

  /**
   * Whether the stored bytes of the entry at `offset` (and of its delta bases in this pack)
   * match the CRC-32s the index records: no inflating, no re-hashing.
   */
  entryIntact(offset: number, depth = 0, position?: number): boolean {
    if (depth > 64) return false;
    const i = position ?? this.positionOf(offset);
    if (i < 0) return false;
    const end = this.endOf(offset);
    if (end <= offset || end > this.packSize - 20) return false;
    if ((crc32(this.read(offset, end - offset)) >>> 0) !== this.crcAt(i)) return false;
    const e = this.entryHead(offset);
    return e.baseOffset === undefined ? e.baseOid === undefined : this.entryIntact(e.baseOffset, depth + 1);
  }

  /** The index position of the entry at `offset`, or -1 (for a delta's base; built on first use). */
  private positionOf(offset: number): number {
    if (!this.byOffset) {
      this.byOffset = new Map();
      for (let i = 0; i < this.count; i++) this.byOffset.set(this.offsetAt(i), i);
    }
    return this.byOffset.get(offset) ?? -1;
  }

  /** Object ids in the pack, sorted. */
  *ids(): Generator<string> {
    for (let i = 0; i < this.count; i++) yield this.idx.toString('hex', 8 + 1024 + i * 20, 8 + 1024 + i * 20 + 20);
  }

  offsetAt(i: number): number {
    const base = 8 + 1024 + this.count * 24;
    const small = this.idx.readUInt32BE(base + i * 4);
    if (!(small & 0x80000000)) return small;
    const large = base + this.count * 4 + (small & 0x7fffffff) * 8;
    return Number(this.idx.readBigUInt64BE(large));
  }

  /**
   * Every entry's offset, ascending. The idx's 4-byte table is byte-swapped and sorted natively
   * (a JavaScript loop over 9,000 entries, still cold, cost `log -n 20` 6 ms); a pack over
   * 2 GiB, whose table points into the 8-byte one, is read entry by entry.
   */
  private sortedOffsets(): Float64Array | Uint32Array {
    const base = 8 + 1024 + this.count * 24;
    const small = new Uint32Array(this.count);
    const view = Buffer.from(small.buffer, small.byteOffset, small.byteLength);
    this.idx.copy(view, 0, base, base + this.count * 4);
    if (os.endianness() === 'LE') view.swap32();
    small.sort();
    // sorted: an entry that points into the 8-byte table, if any, is last
    if (!this.count || !(small[this.count - 1] & 0x80000000)) return small;
    const all = new Float64Array(this.count);
    for (let i = 0; i < this.count; i++) all[i] = this.offsetAt(i);
    return all.sort();
  }

  /** Where the entry at `offset` ends: the next entry's offset, or the pack's trailer. */
  private endOf(offset: number): number {
    if (!this.sorted) this.sorted = this.sortedOffsets();
    const s = this.sorted;
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (s[mid] <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo < s.length ? s[lo] : this.packSize - 20;
  }

  /**
   * `length` bytes at `offset`. Small reads come from 64 KiB blocks kept in a shared LRU
   * (records of neighbouring versions lie together), so a walk makes a few reads, not one per
   * object; large ones are read directly.
   */
  private read(offset: number, length: number): Buffer {
    if (length > BLOCK) return this.pread(offset, length);
    const first = Math.floor(offset / BLOCK);
    const last = Math.floor((offset + length - 1) / BLOCK);
    if (first === last) {
      const b = this.block(first);
      const at = offset - first * BLOCK;
      if (at + length > b.length) throw new Error(`the pack ends at ${first * BLOCK + b.length}, inside an entry`);
      return b.subarray(at, at + length);
    }
    const out = Buffer.allocUnsafe(length);
    for (let i = first, o = 0; i <= last; i++) {
      const b = this.block(i);
      const from = i === first ? offset - first * BLOCK : 0;
      const n = Math.min(b.length - from, length - o);
      if (n <= 0) throw new Error(`the pack ends inside the entry at ${offset}`);
      o += b.copy(out, o, from, from + n);
    }
    return out;
  }

  private block(i: number): Buffer {
    const key = `${this.packFile}:${i}`;
    const hit = blocks.get(key);
    if (hit) {
      blocks.delete(key);
      blocks.set(key, hit);
      return hit;
    }
    const b = this.pread(i * BLOCK, Math.min(BLOCK, this.packSize - i * BLOCK));
    blocks.set(key, b);
    if (blocks.size > MAX_BLOCKS) blocks.delete(blocks.keys().next().value!);
    return b;
  }

  private pread(offset: number, length: number): Buffer {
    if (this.fd === undefined) throw new Error('the pack is closed');
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const n = readSync(this.fd, buf, got, length - got, offset + got);
      if (n === 0) throw new Error(`the pack ends at ${offset + got}, inside an entry`);
      got += n;
    }
    return buf;
  }

  /** The raw entry at `offset`: its type number, inflated data and, for deltas, its base. */
  entry(offset: number): { type: number; data: Buffer; baseOffset?: number; baseOid?: string } {
    const end = this.endOf(offset);
    if (end <= offset || end > this.packSize - 20) throw new Error(`entry at ${offset} lies outside the pack`);
    const raw = this.read(offset, end - offset);
    const head = this.parseHead(raw, offset);
    // One output buffer of the size the header gives (zlib's default 16 KiB pieces, then joined,
    // cost a walk over a thousand versions' trees an allocation and a copy per piece).
    const data = inflateSync(raw.subarray(head.dataAt), { chunkSize: Math.max(64, Math.min(head.size, 64 * 1024 * 1024)) });
    if (data.length !== head.size) throw new Error(`entry at ${offset} inflates to ${data.length} bytes, its header says ${head.size}`);
    return { type: head.type, data, baseOffset: head.baseOffset, baseOid: head.baseOid };
  }

  private entryHead(offset: number): { type: number; baseOffset?: number; baseOid?: string } {
    return this.parseHead(this.read(offset, Math.min(64, this.endOf(offset) - offset)), offset);
  }

  /** An entry's header: type, inflated size, delta base, and where its zlib data starts. */
  private parseHead(raw: Buffer, offset: number): { type: number; size: number; dataAt: number; baseOffset?: number; baseOid?: string } {
    let p = 0;
    let byte = raw[p++];
    const type = (byte >> 4) & 7;
    let size = byte & 15;
    let shift = 4;
    while (byte & 0x80) {
      byte = raw[p++];
      size += (byte & 0x7f) * 2 ** shift;
      shift += 7;
    }
    let baseOffset: number | undefined;
    let baseOid: string | undefined;
    if (type === OFS_DELTA) {
      byte = raw[p++];
      let back = byte & 0x7f;
      while (byte & 0x80) {
        byte = raw[p++];
        back = (back + 1) * 128 + (byte & 0x7f);
      }
      baseOffset = offset - back;
      if (baseOffset < 12) throw new Error(`delta at ${offset} names a base before the pack's start`);
    } else if (type === REF_DELTA) {
      baseOid = raw.toString('hex', p, p + 20);
      p += 20;
    } else if (!PACK_TYPES[type]) throw new Error(`entry at ${offset} has type ${type}`);
    return { type, size, dataAt: p, baseOffset, baseOid };
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    for (const key of [...blocks.keys()]) if (key.startsWith(`${this.packFile}:`)) blocks.delete(key);
  }
}

/** Reads a delta's variable-length size at `p`. */
function deltaSize(d: Buffer, at: { p: number }): number {
  let n = 0;
  let shift = 0;
  let byte: number;
  do {
    byte = d[at.p++];
    n += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80 && at.p < d.length);
  return n;
}

/** git's delta format: the base's size, the result's size, then copy and insert instructions. */
export function applyDelta(base: Buffer, delta: Buffer): Buffer {
  const at = { p: 0 };
  if (deltaSize(delta, at) !== base.length) throw new Error('a delta does not fit its base (size differs)');
  const out = Buffer.allocUnsafe(deltaSize(delta, at));
  let o = 0;
  while (at.p < delta.length) {
    const op = delta[at.p++];
    if (op & 0x80) {
      let off = 0;
      let len = 0;
      for (let i = 0; i < 4; i++) if (op & (1 << i)) off += delta[at.p++] * 2 ** (8 * i);
      for (let i = 0; i < 3; i++) if (op & (0x10 << i)) len += delta[at.p++] * 2 ** (8 * i);
      if (len === 0) len = 0x10000;
      if (off + len > base.length || o + len > out.length) throw new Error('a delta copies from outside its base');
      base.copy(out, o, off, off + len);
      o += len;
    } else if (op > 0) {
      if (at.p + op > delta.length || o + op > out.length) throw new Error('a delta inserts past its end');
      delta.copy(out, o, at.p, at.p + op);
      at.p += op;
      o += op;
    } else throw new Error('a delta holds the reserved instruction 0');
  }
  if (o !== out.length) throw new Error('a delta builds fewer bytes than it says');
  return out;
}
