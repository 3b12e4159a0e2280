/**
 * Packing the version records: loose git objects into a git pack with its version-2 index
 * (docs/format.md §2.3), the files `git index-pack` would write, so real git reads them. Loose
 * objects cost a file each to read (open, fstat, read, close: ~60 µs on this VM), which made a
 * long history slow to list (issue 15); a pack is one open file.
 *
 * Order: the pack and its index are written to temporaries, fsynced, renamed into
 * objects/pack/ (the pack first: a reader takes an index as the sign that its pack is there),
 * the folder fsynced; only then are the loose copies removed. A crash at any point leaves every
 * object readable (loose, packed, or both). Objects are stored whole (no deltas): version
 * records are small, and a reader then needs no other object to rebuild one.
 *
 * Called under the store's writer lock (one packer at a time). Readers in other processes find
 * an object that left its loose file in the new pack (git-objects.ts reads the pack list again
 * on a miss); a pack removed by consolidation stays readable through the descriptor they hold.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readSync, readdirSync, renameSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { fsyncDir, TMP_PREFIX } from '../lib/fsutil.js';
import { GitObjectDamage, gitObjects, type GitObject } from './git-objects.js';
import { IDX_MAGIC } from './git-pack-read.js';

const TYPE_NUMBERS: Record<GitObject['type'], number> = { commit: 1, tree: 2, blob: 3, tag: 4 };
const TYPE_RANK: Record<GitObject['type'], number> = { tag: 0, commit: 1, tree: 2, blob: 3 };

/** Loose objects past which a writer packs them (git's gc.auto is 6,700; ours are read far more often than written). */
export const AUTO_PACK_LOOSE = 512;
/** Packs past which they are combined into one, so that a lookup tries few indexes. */
export const AUTO_PACK_LIMIT = 16;

/** A pack entry's header: type and inflated size in git's little-endian base-128 form. */
function entryHeader(type: number, size: number): Buffer {
  const bytes: number[] = [];
  let b = (type << 4) | (size & 15);
  let rest = Math.floor(size / 16);
  while (rest > 0) {
    bytes.push(b | 0x80);
    b = rest & 0x7f;
    rest = Math.floor(rest / 128);
  }
  bytes.push(b);
  return Buffer.from(bytes);
}

/** Writes `buf` whole at the descriptor's position. */
function put(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

export interface WrittenPack {
  /** pack-<sha1>, the name of both files. */
  name: string;
  /** The objects it holds. */
  ids: string[];
  bytes: number;
}

/**
 * Writes git objects into one pack as they come (memory: 28 bytes per object, not their
 * content), in a temporary beside where it will live; finish() makes it durable and moves it
 * into a repository's objects/pack. Objects are stored whole (no deltas).
 */
export class GitPackWriter {
  private readonly tmp: string;
  private fd: number | undefined;
  private offset = 12;
  private readonly entries: { oid: Buffer; crc: number; offset: number }[] = [];
  private readonly ids = new Set<string>();

  /** `tmpDir`: on the file system of the repository the pack goes to. */
  constructor(tmpDir: string) {
    this.tmp = path.join(tmpDir, `${TMP_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  get size(): number {
    return this.ids.size;
  }

  has(oid: string): boolean {
    return this.ids.has(oid);
  }

  /** Appends an object (its id already checked by the caller); one already added is skipped. */
  add(oid: string, type: GitObject['type'], content: Uint8Array): void {
    if (this.ids.has(oid)) return;
    if (this.fd === undefined) {
      this.fd = openSync(`${this.tmp}.pack`, 'w+', 0o444);
      put(this.fd, Buffer.alloc(12)); // the header, once the count is known
    }
    const entry = Buffer.concat([entryHeader(TYPE_NUMBERS[type], content.length), deflateSync(content, { level: 1 })]);
    put(this.fd, entry);
    this.entries.push({ oid: Buffer.from(oid, 'hex'), crc: crc32(entry), offset: this.offset });
    this.ids.add(oid);
    this.offset += entry.length;
  }

  /**
   * Seals the pack (header, trailer, index), fsyncs both files, renames them into `packDir`
   * (the pack first: readers take the index as the sign that its pack is there) and fsyncs
   * the folder. Undefined when nothing was added.
   */
  async finish(packDir: string): Promise<WrittenPack | undefined> {
    const fd = this.fd;
    if (fd === undefined) return undefined;
    this.fd = undefined;
    let open = true;
    let published = false;
    try {
      const header = Buffer.alloc(12);
      header.write('PACK', 0, 'latin1');
      header.writeUInt32BE(2, 4);
      header.writeUInt32BE(this.entries.length, 8);
      writeSync(fd, header, 0, 12, 0);
      // git's trailer: sha1 of every byte before it, read back once (packs of records are a few MiB).
      const packHash = hashFileRange(fd, this.offset);
      const trailer = Buffer.from(packHash, 'hex');
      writeSync(fd, trailer, 0, 20, this.offset);
      fsyncSync(fd);
      open = false;
      closeSync(fd);
      const idx = indexBytes(this.entries, trailer);
      const ifd = openSync(`${this.tmp}.idx`, 'w', 0o444);
      try {
        put(ifd, idx);
        fsyncSync(ifd);
      } finally {
        closeSync(ifd);
      }
      const name = `pack-${packHash}`;
      renameSync(`${this.tmp}.pack`, path.join(packDir, `${name}.pack`));
      renameSync(`${this.tmp}.idx`, path.join(packDir, `${name}.idx`));
      published = true;
      await fsyncDir(packDir);
      return { name, ids: [...this.ids], bytes: this.offset + 20 };
    } finally {
      if (open) closeSync(fd);
      if (!published) this.removeTemps();
    }
  }

  /** Drops what was written (nothing of it was published). */
  abort(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.removeTemps();
  }

  private removeTemps(): void {
    rmSync(`${this.tmp}.pack`, { force: true });
    rmSync(`${this.tmp}.idx`, { force: true });
  }
}

/** A version-2 pack index for these entries (sorted here), ending with its own sha1. */
function indexBytes(entries: { oid: Buffer; crc: number; offset: number }[], packTrailer: Buffer): Buffer {
  entries.sort((a, b) => a.oid.compare(b.oid));
  const n = entries.length;
  const large = entries.filter((e) => e.offset >= 0x80000000);
  const idx = Buffer.alloc(8 + 1024 + n * 28 + large.length * 8 + 40);
  idx.writeUInt32BE(IDX_MAGIC, 0);
  idx.writeUInt32BE(2, 4);
  const fanout = new Uint32Array(256);
  for (const e of entries) fanout[e.oid[0]]++;
  let total = 0;
  for (let i = 0; i < 256; i++) idx.writeUInt32BE((total += fanout[i]), 8 + i * 4);
  let p = 8 + 1024;
  for (const e of entries) p += e.oid.copy(idx, p);
  for (const e of entries) p = idx.writeUInt32BE(e.crc >>> 0, p);
  let li = 0;
  for (const e of entries) p = idx.writeUInt32BE(e.offset < 0x80000000 ? e.offset : (0x80000000 | li++) >>> 0, p);
  for (const e of large) {
    idx.writeBigUInt64BE(BigInt(e.offset), p);
    p += 8;
  }
  p += packTrailer.copy(idx, p);
  createHash('sha1').update(idx.subarray(0, p)).digest().copy(idx, p);
  return idx;
}

/**
 * Writes the objects `read` returns for `oids` (duplicates and absent ones skipped) as one
 * pack and index in `gitdir`/objects/pack, durable before this returns. Undefined when there
 * was nothing to write.
 */
export async function writeGitPack(gitdir: string, oids: Iterable<string>, read: (oid: string) => GitObject | undefined): Promise<WrittenPack | undefined> {
  const packDir = path.join(gitdir, 'objects', 'pack');
  mkdirSync(packDir, { recursive: true });
  // What listing a history reads (tags, commits, then small trees and blobs: the records) goes
  // first and together, so `log` reads the start of the pack, not all of it (a long history's
  // big trees, one per version, come last). Each object is read twice: once to sort, once to write.
  const order: { oid: string; rank: number; size: number }[] = [];
  const seen = new Set<string>();
  for (const oid of oids) {
    if (seen.has(oid)) continue;
    seen.add(oid);
    const o = read(oid);
    if (o) order.push({ oid, rank: TYPE_RANK[o.type], size: o.content.length });
  }
  order.sort((a, b) => a.rank - b.rank || a.size - b.size || (a.oid < b.oid ? -1 : 1));
  const w = new GitPackWriter(packDir);
  try {
    for (const { oid } of order) {
      const o = read(oid);
      if (o) w.add(oid, o.type, o.content);
    }
    return await w.finish(packDir);
  } catch (e) {
    w.abort();
    throw e;
  }
}

/** sha1 of the first `length` bytes of an open file. */
function hashFileRange(fd: number, length: number): string {
  const h = createHash('sha1');
  const buf = Buffer.allocUnsafe(1 << 20);
  let pos = 0;
  while (pos < length) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, length - pos), pos);
    if (n <= 0) throw new Error('a pack being written ended early');
    h.update(buf.subarray(0, n));
    pos += n;
  }
  return h.digest('hex');
}

/**
 * Loose objects, estimated from 16 of the 256 fan-out folders (00, 10, … f0): a few readdirs
 * per writer, not 256. git's gc --auto reads one folder; two gave a test 1,117 loose objects
 * unpacked, too noisy at this threshold.
 */
function looseEstimate(objdir: string): number {
  let n = 0;
  for (let i = 0; i < 256; i += 16) {
    try {
      n += readdirSync(path.join(objdir, i.toString(16).padStart(2, '0'))).filter((f) => /^[0-9a-f]{38}$/.test(f)).length;
    } catch {
      // no such folder: none there
    }
  }
  return n * 16;
}

/**
 * Packs the loose objects (those that read back whole; a damaged one stays where it is, for
 * fsck to name) and removes their loose files. Caller holds the writer lock.
 */
export async function packLooseObjects(gitdir: string): Promise<WrittenPack | undefined> {
  const objects = gitObjects(gitdir);
  const pack = await writeGitPack(gitdir, objects.looseIds(), (oid) => readWhole(objects, oid));
  for (const oid of pack?.ids ?? []) rmSync(objects.loosePath(oid), { force: true });
  return pack;
}

/** Every object (packed and loose) into one pack; the old packs and loose files removed after. */
export async function repackGitObjects(gitdir: string): Promise<WrittenPack | undefined> {
  const objects = gitObjects(gitdir);
  const before = objects.packedIds();
  const loose = objects.looseIds();
  const all = [...before.flatMap((p) => p.ids), ...loose];
  const pack = await writeGitPack(gitdir, all, (oid) => readWhole(objects, oid));
  if (!pack) return undefined;
  const kept = new Set(pack.ids);
  for (const p of before) {
    if (p.pack.endsWith(`${pack.name}.pack`) || !p.ids.every((id) => kept.has(id))) continue;
    // The index first: a reader never finds an index without its pack.
    unlinkSync(p.pack.replace(/\.pack$/, '.idx'));
    unlinkSync(p.pack);
  }
  for (const oid of loose) if (kept.has(oid)) rmSync(objects.loosePath(oid), { force: true });
  return pack;
}

/** An object that reads back whole, else undefined (a damaged one is left alone). */
function readWhole(objects: ReturnType<typeof gitObjects>, oid: string): GitObject | undefined {
  try {
    return objects.read(oid);
  } catch (e) {
    if (e instanceof GitObjectDamage) return undefined;
    throw e;
  }
}

/**
 * After a writer's work: packs the loose objects once there are many, and combines the packs
 * once there are many. Caller holds the writer lock.
 */
export async function autoPackGitObjects(gitdir: string): Promise<void> {
  const objdir = path.join(gitdir, 'objects');
  if (looseEstimate(objdir) >= AUTO_PACK_LOOSE) await packLooseObjects(gitdir);
  if (gitObjects(gitdir).packCount() > AUTO_PACK_LIMIT) await repackGitObjects(gitdir);
}
