/**
 * Reading git objects: loose files and packs (docs/format.md §2.3), without isomorphic-git.
 * Every object read is re-hashed to its id (a packed one after its deltas are applied), so a
 * damaged object is never returned. Reads are synchronous and small (a version record's objects
 * are a few KiB): a history of 1,000 versions is ~10,000 objects, and per-object promise and
 * WebCrypto round trips, not bytes, were what made `log` and `verify --quick` slow (issue 15).
 * Long loops of reads yield to the event loop now and then (`readAsync`), so a server stays
 * responsive.
 *
 * One reader per repository directory per process (`gitObjects`): pack indexes are read once
 * and the pack list is read again on a miss, so objects another process packs (and then
 * removes as loose files) are found, as git does.
 */
import { closeSync, openSync, readFileSync, readdirSync, readSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { crc32, inflateSync } from 'node:zlib';
import { MstoreError } from '../lib/errors.js';

export type GitObjectType = 'commit' | 'tree' | 'blob' | 'tag';

export interface GitObject {
  type: GitObjectType;
  content: Buffer;
}

/** An object that is present but cannot be returned: `reason` says why, for the message. */
export class GitObjectDamage extends Error {
  constructor(
    readonly oid: string,
    readonly reason: string,
  ) {
    super(`git object ${oid}: ${reason}`);
  }
}

const PACK_TYPES: Record<number, GitObjectType> = { 1: 'commit', 2: 'tree', 3: 'blob', 4: 'tag' };
const OFS_DELTA = 6;
const REF_DELTA = 7;
/** The first four bytes of a version-2 pack index. */
export const IDX_MAGIC = 0xff744f63;

/** The `<type> <size>\0` header git hashes in front of an object's content. */
export function objectHeader(type: string, size: number): Buffer {
  return Buffer.from(`${type} ${size}\0`);
}

export function hashObject(type: string, content: Uint8Array): string {
  return createHash('sha1').update(objectHeader(type, content.length)).update(content).digest('hex');
}

const BLOCK = 64 * 1024;
/** How many recently read objects, each up to RECENT_MAX_BYTES, GitObjects keeps. */
const RECENT_OBJECTS = 16;
const RECENT_MAX_BYTES = 64 * 1024;
/** 32 MiB of pack blocks per process. */
const MAX_BLOCKS = 512;
/** Pack blocks, least recently used first: `<pack file>:<block number>` -> bytes. */
const blocks = new Map<string, Buffer>();

/** A pack and its version-2 index, read once. */
class Pack {
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

const YIELD_EVERY_MS = 15;
/** Timestamps closer than this to a listing cannot prove that nothing changed after it (2 s). */
const RACY_NS = 2_000_000_000n;

export class GitObjects {
  private packs: Pack[] | undefined;
  private packNames = '';
  private lastYield = performance.now();
  /** The fan-out folders of objects/ at the last listing, objects/'s mtime then, and when (ns). */
  private fanOut: Set<string> | undefined;
  private fanOutStamp: bigint | undefined;
  private fanOutAt = 0n;
  /** The pack folder's mtime at the last listing, and when that listing was made (ns). */
  private listedStamp: bigint | undefined;
  private listedAt = 0n;
  /** Objects proven intact or read whole in this process. */
  private readonly proven = new Set<string>();
  /**
   * The last few small objects read, as read (re-hashed then): a version's commit and trees are
   * asked for again within one step (verify reads its record, then walks its tree).
   */
  private readonly recent = new Map<string, GitObject>();
  /** Pack indexes that could not be read, and why (name -> reason). */
  readonly unreadable = new Map<string, string>();

  constructor(readonly gitdir: string) {}

  private get objdir(): string {
    return path.join(this.gitdir, 'objects');
  }

  /** The pack list, read again when `refresh` (after a miss) and the folder's names changed. */
  private packList(refresh = false): Pack[] {
    if (this.packs && !refresh) return this.packs;
    const dir = path.join(this.objdir, 'pack');
    // A miss re-lists the folder only when it may have changed: its mtime moved, or the last
    // listing came within the file system's timestamp granularity of its last change (racy).
    const stamp = statSync(dir, { bigint: true, throwIfNoEntry: false })?.mtimeNs;
    const now = BigInt(Date.now()) * 1_000_000n;
    if (this.packs && stamp !== undefined && stamp === this.listedStamp && this.listedAt - stamp > RACY_NS) return this.packs;
    this.listedStamp = stamp;
    this.listedAt = now;
    let names: string[];
    try {
      names = readdirSync(dir)
        .filter((n) => /^pack-[0-9a-f]{40}\.idx$/.test(n))
        .sort();
    } catch {
      names = [];
    }
    const key = names.join('\n');
    if (this.packs && key === this.packNames) return this.packs;
    const old = new Map((this.packs ?? []).map((p) => [p.packFile, p]));
    const list: Pack[] = [];
    for (const n of names) {
      const packFile = path.join(dir, n.replace(/\.idx$/, '.pack'));
      const kept = old.get(packFile);
      if (kept) {
        list.push(kept);
        old.delete(packFile);
        continue;
      }
      try {
        list.push(new Pack(packFile, readFileSync(path.join(dir, n)), statSync(packFile).size));
      } catch (e) {
        // An index whose pack is not there (yet, or any more) is skipped, as git does; a
        // damaged one cannot be used to find objects (fsck names it).
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.unreadable.set(n, (e as Error).message);
      }
    }
    for (const p of old.values()) p.close();
    this.packs = list;
    this.packNames = key;
    // objects may have gone with a pack (gc): what was read is read again
    this.recent.clear();
    return list;
  }

  loosePath(oid: string): string {
    return path.join(this.objdir, oid.slice(0, 2), oid.slice(2));
  }

  /** Whether the object is present (loose or in a pack), without reading it. */
  has(oid: string): boolean {
    if (!/^[0-9a-f]{40}$/.test(oid)) return false;
    const bin = Buffer.from(oid, 'hex');
    const inPacks = (list: Pack[]): boolean => list.some((p) => p.find(bin) >= 0);
    if (inPacks(this.packList())) return true;
    if (this.fanOutMayHold(oid) && statSync(this.loosePath(oid), { throwIfNoEntry: false })) return true;
    const before = this.packs;
    const list = this.packList(true);
    return list !== before && inPacks(list);
  }

  /**
   * The object, re-hashed to its id; undefined when absent. Throws GitObjectDamage when it is
   * present but unreadable, malformed or not hashing to its id.
   */
  read(oid: string): GitObject | undefined {
    const recent = this.recent.get(oid);
    if (recent) return recent;
    if (!/^[0-9a-f]{40}$/.test(oid)) return undefined;
    const bin = Buffer.from(oid, 'hex');
    // Packs first (most objects of a long history are there), then the loose file, then the
    // packs again if their list changed: an object packed and removed by another process since.
    const o = this.readPacked(oid, bin, false) ?? this.readLoose(oid) ?? this.readPacked(oid, bin, true);
    if (o) {
      this.proven.add(oid);
      if (o.content.length <= RECENT_MAX_BYTES) {
        if (this.recent.size >= RECENT_OBJECTS) this.recent.delete(this.recent.keys().next().value!);
        this.recent.set(oid, o);
      }
    }
    return o;
  }

  private readPacked(oid: string, bin: Buffer, refresh: boolean): GitObject | undefined {
    const before = this.packs;
    const list = this.packList(refresh);
    if (refresh && list === before) return undefined;
    for (const p of list) {
      const i = p.find(bin);
      if (i < 0) continue;
      let o: GitObject;
      try {
        o = this.resolve(p, p.offsetAt(i), 0);
      } catch (e) {
        throw new GitObjectDamage(oid, `it cannot be read from ${path.basename(p.packFile)} (${(e as Error).message})`);
      }
      if (hashObject(o.type, o.content) !== oid) throw new GitObjectDamage(oid, 'its bytes do not hash to its id');
      return o;
    }
    return undefined;
  }

  /**
   * Whether the object is present and its stored bytes are as written, more cheaply than
   * read(): a packed object's entry is checked against the CRC-32 in its pack's index; a loose
   * one is read and re-hashed. For derived data (record-cache.ts) to prove that what it was
   * derived from is still there, undamaged. Remembered per process once proven.
   */
  intact(oid: string): boolean {
    if (this.proven.has(oid)) return true;
    let ok = false;
    const bin = /^[0-9a-f]{40}$/.test(oid) ? Buffer.from(oid, 'hex') : undefined;
    if (!bin) return false;
    const inPack = (list: Pack[]): boolean | undefined => {
      for (const p of list) {
        const i = p.find(bin);
        if (i >= 0) {
          try {
            return p.entryIntact(p.offsetAt(i), 0, i);
          } catch {
            return false;
          }
        }
      }
      return undefined;
    };
    const packed = inPack(this.packList());
    if (packed !== undefined) ok = packed;
    else {
      try {
        ok = this.read(oid) !== undefined;
      } catch {
        ok = false;
      }
    }
    if (ok) this.proven.add(oid);
    return ok;
  }

  forgetProven(): void {
    this.proven.clear();
    this.recent.clear();
  }

  /** read(), yielding to the event loop every few ms of reading so that a long walk does not starve a server. */
  async readAsync(oid: string): Promise<GitObject | undefined> {
    const now = performance.now();
    if (now - this.lastYield > YIELD_EVERY_MS) {
      await new Promise((r) => setImmediate(r));
      this.lastYield = performance.now();
    }
    return this.read(oid);
  }

  /**
   * readAsync, with absence and damage as MstoreErrors naming the object and `role` (what it is
   * to the reader): EMISSING, ECORRUPT.
   */
  async get(oid: string, role = 'object'): Promise<GitObject> {
    let o;
    try {
      o = await this.readAsync(oid);
    } catch (e) {
      if (!(e instanceof GitObjectDamage)) throw e;
      throw new MstoreError('ECORRUPT', `git object ${oid} (${role}) is damaged: ${e.reason}`, { what: oid });
    }
    if (!o) throw new MstoreError('EMISSING', `git object ${oid} (${role}) is missing`, { what: oid });
    return o;
  }

  /**
   * False when the loose object's fan-out folder does not exist (a fresh or fully packed
   * repository: a first push asks about 9,000 absent objects). The folder list is read again
   * when objects/ changed since, or may have (the racy rule of packList).
   */
  private fanOutMayHold(oid: string): boolean {
    const stamp = statSync(this.objdir, { bigint: true, throwIfNoEntry: false })?.mtimeNs;
    if (stamp === undefined) return false;
    if (!this.fanOut || stamp !== this.fanOutStamp || this.fanOutAt - stamp <= RACY_NS) {
      this.fanOut = new Set(readdirOr(this.objdir));
      this.fanOutStamp = stamp;
      this.fanOutAt = BigInt(Date.now()) * 1_000_000n;
    }
    return this.fanOut.has(oid.slice(0, 2));
  }

  private readLoose(oid: string): GitObject | undefined {
    if (!this.fanOutMayHold(oid)) return undefined;
    let raw: Buffer;
    try {
      raw = readFileSync(this.loosePath(oid));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw new GitObjectDamage(oid, `it cannot be read (${code ?? (e as Error).message})`);
    }
    let whole: Buffer;
    try {
      whole = inflateSync(raw);
    } catch (e) {
      throw new GitObjectDamage(oid, `it cannot be read (${(e as Error).message})`);
    }
    const sp = whole.indexOf(0x20);
    const nul = whole.indexOf(0, sp + 1);
    const type = whole.toString('latin1', 0, Math.max(0, sp));
    if (sp < 0 || nul < 0 || !['commit', 'tree', 'blob', 'tag'].includes(type) || whole.toString('latin1', sp + 1, nul) !== String(whole.length - nul - 1)) {
      throw new GitObjectDamage(oid, 'it cannot be read (its header is not `<type> <size>`)');
    }
    if (createHash('sha1').update(whole).digest('hex') !== oid) throw new GitObjectDamage(oid, 'its bytes do not hash to its id');
    return { type: type as GitObjectType, content: whole.subarray(nul + 1) };
  }

  /** The object at a pack offset with its deltas applied (not yet re-hashed). */
  private resolve(p: Pack, offset: number, depth: number): GitObject {
    if (depth > 64) throw new Error('a delta chain longer than 64');
    const e = p.entry(offset);
    if (PACK_TYPES[e.type]) return { type: PACK_TYPES[e.type], content: e.data };
    let base: GitObject | undefined;
    if (e.baseOffset !== undefined) base = this.resolve(p, e.baseOffset, depth + 1);
    else {
      base = this.read(e.baseOid!);
      if (!base) throw new Error(`a delta's base ${e.baseOid} is missing`);
    }
    return { type: base.type, content: applyDelta(base.content, e.data) };
  }

  /** Loose object ids (no reading). */
  looseIds(): string[] {
    const out: string[] = [];
    for (const sub of readdirOr(this.objdir)) {
      if (!/^[0-9a-f]{2}$/.test(sub)) continue;
      for (const name of readdirOr(path.join(this.objdir, sub))) if (/^[0-9a-f]{38}$/.test(name)) out.push(sub + name);
    }
    return out;
  }

  /** How many packs there are. */
  packCount(): number {
    return this.packList(true).length;
  }

  /** Ids of the packed objects, per pack file. */
  packedIds(): { pack: string; ids: string[] }[] {
    return this.packList(true).map((p) => ({ pack: p.packFile, ids: [...p.ids()] }));
  }
}

function readdirOr(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

const readers = new Map<string, GitObjects>();

/** The process's reader for a repository directory. */
export function gitObjects(gitdir: string): GitObjects {
  const key = path.resolve(gitdir);
  let r = readers.get(key);
  if (!r) readers.set(key, (r = new GitObjects(key)));
  return r;
}
