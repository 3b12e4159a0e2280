/**
 * Append-only pack files. A pack describes itself (restic's rule: data first, index
 * after), so the lmdb index can be rebuilt from packs alone:
 *
 *   "MSTPACK\x01"                         8 bytes
 *   entry bytes, back to back             sum of lengths
 *   table: per entry  type u8 | length u32 LE | id 32 bytes     (37 bytes each)
 *   footer: sha256(table) 32 | entry count u32 LE | "MSTPEND\x01" 8   (44 bytes)
 *
 * The pack id is sha256(table) in hex, and the file is packs/<id[0:2]>/<id>.pack.
 * Entry ids are content hashes, so the table hash names the pack's content.
 */
import { mkdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { sha256 } from '../lib/hashing.js';
import { fsyncDir, open, rename, writeInPieces } from '../lib/fsutil.js';
import { storageError } from '../lib/errors.js';

export const PACK_MAGIC = Buffer.from('MSTPACK\x01', 'latin1');
export const PACK_END_MAGIC = Buffer.from('MSTPEND\x01', 'latin1');
export const TABLE_ENTRY_BYTES = 37;
export const FOOTER_BYTES = 44;
/** What readPackTable reads from a pack's end at first: the footer and a table of up to ~440 entries. */
const TAIL_GUESS_BYTES = 16 * 1024;

/** A chunk of file content; id = sha256(bytes). */
export const ENTRY_CHUNK = 1;
/** A file manifest; id = sha256 of the whole file; bytes = (chunk id 32 | length u32 LE) per chunk. */
export const ENTRY_FILE = 2;
/**
 * A recipe (docs/format.md §18): id = sha256 of the merged file it rebuilds; bytes = the
 * canonical recipe record. Content a store keeps as a recipe has no manifest.
 */
export const ENTRY_RECIPE = 3;

export interface PackEntry {
  type: number;
  id: Buffer;
  offset: number;
  length: number;
}

export interface PackInfo {
  id: string;
  size: number;
  entries: PackEntry[];
}

export function packPath(packsDir: string, id: string): string {
  return path.join(packsDir, id.slice(0, 2), `${id}.pack`);
}

/** Background fdatasync every this many bytes keeps the final fsync short. */
const SYNC_EVERY = 64 * 1024 * 1024;

interface OpenPack {
  /** Opened asynchronously; everything else about the pack is bookkept synchronously. */
  fh: Promise<FileHandle>;
  tmp: string;
  offset: number;
  entries: PackEntry[];
  writes: Promise<unknown>[];
  unsynced: number;
  syncing: Promise<void> | undefined;
  /** The first background fdatasync failure, if any. */
  syncFailed?: unknown;
}

/** Keeps a promise's rejection for whoever awaits it later, without an unhandled-rejection crash. */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

export class PackWriter {
  private cur: OpenPack | undefined;
  private finishing: Promise<PackInfo>[] = [];
  /** Packs sealed under a name that already held the same pack: never removed by discard(). */
  private readonly preexisting = new Set<string>();
  bytesWritten = 0;

  constructor(
    private readonly tmpDir: string,
    private readonly packsDir: string,
    private readonly targetBytes: number,
  ) {}

  /**
   * Appends an entry. Placement (pack, offset) is decided synchronously, in call order, so
   * concurrent callers never race; the promise settles when the bytes are written, and the
   * caller must keep `data` unchanged until then.
   */
  add(type: number, id: Buffer, data: Uint8Array): Promise<void> {
    let p = this.cur;
    if (p && p.offset + data.length > this.targetBytes && p.entries.length > 0) {
      this.finishing.push(quiet(this.seal(p)));
      p = undefined;
    }
    if (!p) p = this.cur = this.openPack();
    const pack = p;
    const offset = pack.offset;
    pack.offset += data.length;
    pack.entries.push({ type, id, offset, length: data.length });
    this.bytesWritten += data.length;
    const w = pack.fh.then(async (fh) => {
      await writeInPieces(fh, data, offset).catch((e: unknown) => {
        throw storageError(e, pack.tmp) ?? e;
      });
      pack.unsynced += data.length;
      if (pack.unsynced >= SYNC_EVERY && !pack.syncing) {
        pack.unsynced = 0;
        // Its failure is kept for seal(): a later fdatasync may succeed after the kernel dropped
        // the pages this one could not write, so the error must not be lost.
        pack.syncing = fh
          .datasync()
          .then(() => undefined, (e: unknown) => void (pack.syncFailed ??= e))
          .finally(() => (pack.syncing = undefined));
      }
    });
    pack.writes.push(quiet(w));
    return w;
  }

  private openPack(): OpenPack {
    const tmp = path.join(this.tmpDir, `pack-${randomBytes(8).toString('hex')}.tmp`);
    const fh = quiet(
      open(tmp, 'wx')
        .then(async (h) => {
          try {
            await h.write(PACK_MAGIC, 0, PACK_MAGIC.length, 0);
          } catch (e) {
            await h.close().catch(() => undefined);
            await unlink(tmp).catch(() => undefined);
            throw e;
          }
          return h;
        })
        .catch((e: unknown) => {
          throw storageError(e, tmp) ?? e;
        }),
    );
    return { fh, tmp, offset: PACK_MAGIC.length, entries: [], writes: [], unsynced: 0, syncing: undefined };
  }

  /** Writes table and footer, fsyncs, and renames the pack into place. */
  private async seal(p: OpenPack): Promise<PackInfo> {
    let fh: FileHandle | undefined;
    // Once renamed, a failure (the directory fsync) must remove the pack under its final name.
    let placed: string | undefined;
    try {
      // Inside the try: a pack whose first write failed is removed here too.
      fh = await p.fh;
      await Promise.all(p.writes);
      await p.syncing;
      if (p.syncFailed !== undefined) throw p.syncFailed;
      const { id, tail } = encodePackTail(p.entries);
      await fh.write(tail, 0, tail.length, p.offset);
      await fh.datasync();
      await fh.close();
      const final = packPath(this.packsDir, id);
      if (await mkdir(path.dirname(final), { recursive: true })) await fsyncDir(this.packsDir);
      // A pack identical to one already there (gc rewriting an interrupted gc's output) is
      // that pack: it is never removed on a failure.
      const existed = await stat(final).then(() => true, () => false);
      if (existed) this.preexisting.add(id);
      await rename(p.tmp, final);
      if (!existed) placed = final;
      await fsyncDir(path.dirname(final));
      return { id, size: p.offset + tail.length, entries: p.entries };
    } catch (e) {
      await fh?.close().catch(() => undefined);
      await unlink(placed ?? p.tmp).catch(() => undefined);
      throw storageError(e, p.tmp) ?? e;
    }
  }

  /**
   * Seals the open pack; resolves with every pack this writer completed since the last
   * finish(). Entries added while it runs go to a new pack, left for the next finish().
   */
  async finish(): Promise<PackInfo[]> {
    const p = this.cur;
    this.cur = undefined;
    const sealing = this.finishing;
    this.finishing = [];
    if (p?.entries.length) sealing.push(this.seal(p));
    else if (p) {
      await (await p.fh).close();
      await unlink(p.tmp);
    }
    // One failed seal fails the finish; the packs sealed beside it are removed (nothing will
    // record them), so a failure leaves no pack the index does not name.
    const done = await Promise.allSettled(sealing);
    const packs = done.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = done.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await this.discard(packs);
      throw failed.reason;
    }
    return packs;
  }

  /** Removes sealed packs that the index never recorded (its transaction failed): nothing names them. */
  async discard(packs: PackInfo[]): Promise<void> {
    for (const p of packs) if (!this.preexisting.has(p.id)) await unlink(packPath(this.packsDir, p.id)).catch(() => undefined);
  }

  /** Drops everything this writer wrote (on error): nothing of it was published, so the store is as before. */
  async abort(): Promise<void> {
    const p = this.cur;
    this.cur = undefined;
    if (p) {
      await Promise.allSettled(p.writes);
      await p.fh.then((h) => h.close()).catch(() => undefined);
      await unlink(p.tmp).catch(() => undefined);
    }
    for (const r of await Promise.allSettled(this.finishing)) {
      if (r.status === 'fulfilled') await this.discard([r.value]);
    }
    this.finishing = [];
  }
}

/** A pack's table and footer (docs/format.md §5.1) for `entries` in pack order, and the pack id it gives. */
export function encodePackTail(entries: { type: number; length: number; id: Buffer }[]): { id: string; tail: Buffer } {
  const table = Buffer.alloc(entries.length * TABLE_ENTRY_BYTES);
  entries.forEach((e, i) => {
    const o = i * TABLE_ENTRY_BYTES;
    table.writeUInt8(e.type, o);
    table.writeUInt32LE(e.length, o + 1);
    e.id.copy(table, o + 5);
  });
  const hash = sha256(table);
  const footer = Buffer.alloc(FOOTER_BYTES);
  hash.copy(footer, 0);
  footer.writeUInt32LE(entries.length, 32);
  PACK_END_MAGIC.copy(footer, 36);
  return { id: hash.toString('hex'), tail: Buffer.concat([table, footer]) };
}

/** Parses a pack's table from its tail; verifies magic and table hash. */
export function parsePackTail(id: string, fileSize: number, tableAndFooter: Buffer): PackEntry[] {
  const footer = tableAndFooter.subarray(tableAndFooter.length - FOOTER_BYTES);
  if (!footer.subarray(36).equals(PACK_END_MAGIC)) throw new Error(`pack ${id}: bad footer magic`);
  const count = footer.readUInt32LE(32);
  const tableLen = count * TABLE_ENTRY_BYTES;
  if (tableAndFooter.length < tableLen + FOOTER_BYTES) throw new Error(`pack ${id}: table truncated`);
  const table = tableAndFooter.subarray(tableAndFooter.length - FOOTER_BYTES - tableLen, tableAndFooter.length - FOOTER_BYTES);
  const hash = sha256(table);
  if (!hash.equals(footer.subarray(0, 32))) throw new Error(`pack ${id}: table hash mismatch`);
  if (hash.toString('hex') !== id) throw new Error(`pack ${id}: table hash does not match the pack name`);
  const entries: PackEntry[] = [];
  let offset = PACK_MAGIC.length;
  for (let i = 0; i < count; i++) {
    const o = i * TABLE_ENTRY_BYTES;
    const length = table.readUInt32LE(o + 1);
    entries.push({ type: table.readUInt8(o), id: Buffer.from(table.subarray(o + 5, o + 37)), offset, length });
    offset += length;
  }
  if (offset + tableLen + FOOTER_BYTES !== fileSize) throw new Error(`pack ${id}: entries do not add up to the file size`);
  return entries;
}

/**
 * Reads and verifies the table of a pack file on disk. Synchronous reads (three small ones):
 * verify and fsck read the tables of every pack, and a thread-pool round trip per read cost
 * more than the reads (issue 15).
 */
export async function readPackTable(packsDir: string, id: string): Promise<PackEntry[]> {
  const fd = openSync(packPath(packsDir, id), 'r');
  try {
    const { size } = fstatSync(fd);
    if (size < PACK_MAGIC.length + FOOTER_BYTES) throw new Error(`pack ${id}: too short`);
    const magic = Buffer.alloc(PACK_MAGIC.length);
    readSync(fd, magic, 0, magic.length, 0);
    if (!magic.equals(PACK_MAGIC)) throw new Error(`pack ${id}: bad header magic`);
    // The footer and, most often, the whole table in one read (verify --quick reads the
    // tables of every pack: a thousand versions make a thousand packs).
    let tail = Buffer.allocUnsafe(Math.min(TAIL_GUESS_BYTES, size - PACK_MAGIC.length));
    if (readSync(fd, tail, 0, tail.length, size - tail.length) !== tail.length) throw new Error(`pack ${id}: short read`);
    const count = tail.readUInt32LE(tail.length - FOOTER_BYTES + 32);
    const tailBytes = count * TABLE_ENTRY_BYTES + FOOTER_BYTES;
    if (tailBytes > size - PACK_MAGIC.length) throw new Error(`pack ${id}: table larger than the file`);
    if (tailBytes > tail.length) {
      tail = Buffer.alloc(tailBytes);
      if (readSync(fd, tail, 0, tail.length, size - tail.length) !== tail.length) throw new Error(`pack ${id}: short read`);
    }
    return parsePackTail(id, size, tail.subarray(tail.length - tailBytes));
  } finally {
    closeSync(fd);
  }
}

/** The bytes of one entry of a pack on disk (a recipe or manifest record; chunks are read by ContentReader). */
export async function readPackEntry(packsDir: string, id: string, e: PackEntry): Promise<Buffer> {
  const data = Buffer.alloc(e.length);
  const fh = await open(packPath(packsDir, id), 'r');
  try {
    const { bytesRead } = await fh.read(data, 0, e.length, e.offset);
    if (bytesRead !== e.length) throw new Error(`pack ${id}: entry ${e.id.toString('hex')} is cut short`);
  } finally {
    await fh.close();
  }
  return data;
}
