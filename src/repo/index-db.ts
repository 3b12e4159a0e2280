/**
 * The lmdb index: a cache of what the packs say plus the workspace stat cache. Every
 * entry except the stat cache can be rebuilt from packs (docs/format.md, "Index").
 *
 *   chunks  chunk id (32 bytes)  -> pack id (32) | offset u64 LE | length u32 LE
 *   files   file oid (32 bytes)  -> size u64 LE | manifest (chunk id 32 | length u32 LE)*
 *   recipes file oid (32 bytes)  -> the recipe record (format/recipe.ts), for content kept as
 *           its recipe instead of chunks: an oid has a files row or a recipes row, never both
 *   packs   pack id (hex string) -> {size, entries, created}
 *   stat    workspace path       -> StatEntry (msgpack)
 *
 * Opening checks the file first (index-check.ts) and opens it read-only where it cannot be
 * written (a read-only mount, another user's store); every lmdb call is guarded: a damaged
 * index is ECORRUPT naming it and `mstore fsck --repair-index`, a refused write ESTORAGE.
 */
import { accessSync, closeSync, constants as fsConstants, existsSync, fdatasyncSync, mkdirSync, fstatSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import { lazyModule } from '../lib/lazy-module.js';
import type { RootDatabase, Database } from 'lmdb';

/**
 * lmdb's open, loaded on first use: its native addon costs ~40 ms to load, which commands that
 * never open the index (log, tag --list) should not pay.
 */
const lmdb = lazyModule<typeof import('lmdb')>('lmdb');
function open(...args: Parameters<typeof import('lmdb').open>): RootDatabase {
  return lmdb().open(...args);
}
import { MstoreError, errorLine, storageError } from '../lib/errors.js';
import { INDEX_FILE, indexFileProblem, indexUsedBytes } from './index-check.js';

/** Index space reserved before any write transaction, beyond three times its rows. */
const RESERVE_BASE = 256 * 1024;
import type { PackInfo } from './pack.js';
import { ENTRY_CHUNK, ENTRY_FILE, ENTRY_RECIPE } from './pack.js';
import { now as clockNow } from '../lib/clock.js';
import { parseRecipe, recipeInputs } from '../format/recipe.js';
import { fault } from '../lib/faults.js';

export interface ChunkLocation {
  pack: string;
  offset: number;
  length: number;
}

export interface ManifestChunk {
  id: Buffer;
  length: number;
}

export type StatKind = 'lfs' | 'git' | 'link';

/** What the workspace file looked like when its content was last hashed. */
export interface StatEntry {
  size: number;
  mtimeNs: string;
  ctimeNs: string;
  ino: number;
  mode: number;
  kind: StatKind;
  /** sha256 of the content (hex). */
  oid: string;
  /** git blob id of what the tree stores for it (pointer, text or link target). */
  blob: string;
  /** ns timestamp when this entry was recorded: entries with mtime close to it are "racy". */
  at: string;
}

export const MANIFEST_RECORD = 36;
const MAX_STAT_KEY = 1900;

export function encodeManifest(chunks: ManifestChunk[]): Buffer {
  const b = Buffer.alloc(chunks.length * MANIFEST_RECORD);
  chunks.forEach((c, i) => {
    c.id.copy(b, i * MANIFEST_RECORD);
    b.writeUInt32LE(c.length, i * MANIFEST_RECORD + 32);
  });
  return b;
}

export function decodeManifest(b: Uint8Array): ManifestChunk[] {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (buf.length % MANIFEST_RECORD !== 0) throw new Error('manifest length is not a multiple of 36');
  const out: ManifestChunk[] = [];
  for (let o = 0; o < buf.length; o += MANIFEST_RECORD) {
    out.push({ id: Buffer.from(buf.subarray(o, o + 32)), length: buf.readUInt32LE(o + 32) });
  }
  return out;
}

export interface NewFile {
  oid: Buffer;
  size: number;
  manifest: Buffer;
}

/** A recipe to record: the content id it rebuilds and its record's bytes. */
export interface NewRecipe {
  oid: Buffer;
  record: Buffer;
}

/** What a batch of sealed packs adds besides chunk rows (each row only where a pack holds its entry). */
export interface NewRows {
  files: NewFile[];
  recipes?: NewRecipe[];
  /**
   * A recipe whose inputs the index lacks (gc freed them meanwhile): 'refuse' (default) fails the
   * batch with EMISSING, recording nothing; 'skip' leaves it out (reindexing a crashed writer's packs).
   */
  orphans?: 'refuse' | 'skip';
}

/** The one error for an index lmdb cannot use: names the file and the repair. */
export function indexDamaged(dir: string, why: string): MstoreError {
  const file = path.join(dir, INDEX_FILE);
  return new MstoreError('ECORRUPT', `index ${file} is damaged (${why}); run 'mstore fsck --repair-index'`, { what: file });
}

function canWrite(p: string): boolean {
  try {
    accessSync(p, fsConstants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function decodeLocation(v: Buffer): ChunkLocation {
  if (v.length !== 44) throw new Error(`a chunk row of ${v.length} bytes, not 44`);
  return { pack: v.subarray(0, 32).toString('hex'), offset: Number(v.readBigUInt64LE(32)), length: v.readUInt32LE(40) };
}

function decodeFileRow(v: Buffer): { size: number; chunks: ManifestChunk[] } {
  if (v.length < 8) throw new Error(`a file row of ${v.length} bytes`);
  return { size: Number(v.readBigUInt64LE(0)), chunks: decodeManifest(v.subarray(8)) };
}

/** About what stat cache updates add to the index (key plus a msgpack entry). */
function statBytes(updates: Map<string, StatEntry | null> | undefined): number {
  let n = 0;
  for (const k of updates?.keys() ?? []) n += Buffer.byteLength(k) + 200;
  return n;
}

export class StoreIndex {
  private readonly chunks: Database<Buffer, Buffer>;
  private readonly files: Database<Buffer, Buffer>;
  /** Absent in an index an older mstore wrote, opened read-only (it cannot be created there): no recipes. */
  private readonly recipes: Database<Buffer, Buffer> | undefined;
  private readonly packs: Database<{ size: number; entries: number; created: string }, string>;
  private readonly stats: Database<StatEntry, string>;

  private constructor(
    private readonly dir: string,
    private readonly root: RootDatabase,
    /** False where the store cannot be written: every write is refused with ESTORAGE. */
    readonly writable: boolean,
  ) {
    this.chunks = this.root.openDB({ name: 'chunks', keyEncoding: 'binary', encoding: 'binary' });
    this.files = this.root.openDB({ name: 'files', keyEncoding: 'binary', encoding: 'binary' });
    // lmdb gives nothing for a database a read-only environment lacks (an older mstore's index).
    this.recipes = this.root.openDB({ name: 'recipes', keyEncoding: 'binary', encoding: 'binary' }) ?? undefined;
    this.packs = this.root.openDB({ name: 'packs' });
    this.stats = this.root.openDB({ name: 'stat' });
  }

  /**
   * Opens the index in `dir` after checking its file; read-only where it cannot be written,
   * and an empty stand-in where it does not exist and cannot be created (a read-only store
   * that never had one: nothing is indexed).
   */
  static open(dir: string): StoreIndex {
    const problem = indexFileProblem(dir);
    if (problem) throw indexDamaged(dir, problem);
    const file = path.join(dir, INDEX_FILE);
    const present = existsSync(file);
    // An index directory removed by hand (derived data) comes back where the store can be written.
    if (!existsSync(dir) && canWrite(path.dirname(dir))) mkdirSync(dir, { recursive: true });
    const writable = canWrite(dir) && (!present || canWrite(file));
    let root: RootDatabase | undefined;
    try {
      // overlappingSync (lmdb-js's default on Linux) lets a commit return before its fsync;
      // the publish order (index before refs) needs the index durable when the call returns.
      if (writable) root = open({ path: dir, maxDbs: 8, compression: false, overlappingSync: false });
      else if (present) root = open({ path: dir, maxDbs: 8, compression: false, readOnly: true });
      else root = open({ maxDbs: 8, compression: false }); // a temporary, deleted on close
      return new StoreIndex(dir, root, writable);
    } catch (e) {
      void root?.close().catch(() => undefined);
      if (e instanceof MstoreError) throw e;
      throw storageError(e, file, 'opening') ?? indexDamaged(dir, errorLine(e));
    }
  }

  /** Every lmdb read goes through here: what lmdb throws means a damaged index. */
  private read<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof MstoreError) throw e;
      throw indexDamaged(this.dir, errorLine(e));
    }
  }

  /**
   * Every lmdb write transaction goes through here: a refused write is ESTORAGE naming the
   * file. `rowBytes` (keys and values written) sizes the space reserved first (reserve()).
   */
  private write(rowBytes: number, fn: () => void): void {
    const file = path.join(this.dir, INDEX_FILE);
    if (!this.writable) throw new MstoreError('ESTORAGE', `writing ${file}: the index cannot be written here (read-only store or no write permission); nothing was published`, { what: file });
    try {
      // lmdb's own writes cannot be intercepted, so the fault seam (class index) sits here.
      fault('index', 'index transaction', this.dir);
      this.reserve(file, rowBytes);
      this.root.transactionSync(fn);
    } catch (e) {
      if (e instanceof MstoreError) throw e;
      throw storageError(e, file) ?? indexDamaged(this.dir, errorLine(e));
    }
  }

  /**
   * Makes sure the file already holds, past lmdb's last page, room for what a transaction of
   * `rowBytes` can add (three times the rows, for half-full pages and copied tree paths, plus
   * 256 KiB), written as zeros and fdatasynced. lmdb then overwrites blocks it owns: a full
   * disk fails here, as one clean error, and never inside lmdb (whose page flush prints its
   * own text and may leave EIO). The slack is reused by later transactions.
   */
  private reserve(file: string, rowBytes: number): void {
    const at = indexUsedBytes(this.dir);
    if (!at) return; // a fresh environment: lmdb has not written its meta pages yet
    const want = at.used + Math.ceil((rowBytes * 3 + RESERVE_BASE) / at.pageBytes) * at.pageBytes;
    const fd = openSync(file, 'r+');
    let size = 0;
    try {
      size = fstatSync(fd).size;
      if (size >= want) return;
      const zeros = Buffer.alloc(Math.min(want - size, 1024 * 1024));
      for (let o = size; o < want; ) o += writeSync(fd, zeros, 0, Math.min(zeros.length, want - o), o);
      fdatasyncSync(fd);
    } catch (e) {
      try {
        ftruncateSync(fd, size);
      } catch {
        // the reservation stays partly: harmless slack
      }
      throw e;
    } finally {
      closeSync(fd);
    }
  }

  hasChunk(id: Buffer): boolean {
    return this.read(() => this.chunks.doesExist(id));
  }

  chunk(id: Buffer): ChunkLocation | undefined {
    return this.read(() => {
      const v = this.chunks.getBinary(id);
      return v ? decodeLocation(v) : undefined;
    });
  }

  hasFile(oid: Buffer): boolean {
    return this.read(() => this.files.doesExist(oid));
  }

  file(oid: Buffer): { size: number; chunks: ManifestChunk[] } | undefined {
    return this.read(() => {
      const v = this.files.getBinary(oid);
      return v ? decodeFileRow(v) : undefined;
    });
  }

  /** The recipe record of content kept as its recipe (no manifest), or undefined. */
  recipe(oid: Buffer): Buffer | undefined {
    return this.read(() => this.recipes?.getBinary(oid) ?? undefined);
  }

  /** The recipe of content held as its recipe only: bytes win should a manifest hold it too (fsck reports that). */
  heldAsRecipe(oid: Buffer): Buffer | undefined {
    return this.hasFile(oid) ? undefined : this.recipe(oid);
  }

  hasRecipe(oid: Buffer): boolean {
    return this.read(() => this.recipes?.doesExist(oid) ?? false);
  }

  /**
   * Whether the store holds content `oid`: its chunks (a manifest) or its recipe. A recipe is
   * recorded only with its inputs' manifests, and gc keeps those while the recipe lives, so a
   * recipe row is enough (fsck checks the rule).
   */
  hasContent(oid: Buffer): boolean {
    return this.hasFile(oid) || this.hasRecipe(oid);
  }

  stat(path: string): StatEntry | undefined {
    return this.read(() => this.stats.get(path));
  }

  /** All stat cache entries (workspace paths tracked by the last commit or checkout). */
  statPaths(): string[] {
    return this.read(() => Array.from(this.stats.getKeys()) as string[]);
  }

  packIds(): string[] {
    return this.read(() => Array.from(this.packs.getKeys()) as string[]);
  }

  /**
   * Publishes sealed packs and their files in one durable transaction, with sorted keys
   * (big sorted batches keep lmdb compact and fast: for 1M entries 86 MB vs 327 MB on disk, 784k vs 63k puts/s, measured on this kind of machine).
   */
  recordPacks(packs: PackInfo[], rows: NewRows, statUpdates?: Map<string, StatEntry | null>): void {
    const chunkRows: [Buffer, Buffer][] = [];
    const fileRows: [Buffer, Buffer][] = [];
    const recipeRows: [Buffer, Buffer][] = [];
    const byOid = new Map(rows.files.map((f) => [f.oid.toString('hex'), f]));
    const recipeByOid = new Map((rows.recipes ?? []).map((r) => [r.oid.toString('hex'), r]));
    for (const p of packs) {
      const packId = Buffer.from(p.id, 'hex');
      for (const e of p.entries) {
        if (e.type === ENTRY_CHUNK) {
          const v = Buffer.alloc(44);
          packId.copy(v, 0);
          v.writeBigUInt64LE(BigInt(e.offset), 32);
          v.writeUInt32LE(e.length, 40);
          chunkRows.push([e.id, v]);
        } else if (e.type === ENTRY_FILE) {
          const f = byOid.get(e.id.toString('hex'));
          if (!f) continue;
          const v = Buffer.alloc(8 + f.manifest.length);
          v.writeBigUInt64LE(BigInt(f.size), 0);
          f.manifest.copy(v, 8);
          fileRows.push([e.id, v]);
        } else if (e.type === ENTRY_RECIPE) {
          const r = recipeByOid.get(e.id.toString('hex'));
          if (r) recipeRows.push([e.id, r.record]);
        }
      }
    }
    const recipeKept = this.recipesWithInputs(recipeRows, fileRows, rows.orphans ?? 'refuse');
    chunkRows.sort((a, b) => Buffer.compare(a[0], b[0]));
    fileRows.sort((a, b) => Buffer.compare(a[0], b[0]));
    recipeKept.sort((a, b) => Buffer.compare(a[0], b[0]));
    if (!chunkRows.length && !fileRows.length && !recipeKept.length && !packs.length && !statUpdates?.size) return;
    const created = clockNow().toISOString();
    const sized = (r: [Buffer, Buffer][]): number => r.reduce((a, [, v]) => a + 32 + v.length, 0);
    const bytes = chunkRows.length * 76 + sized(fileRows) + sized(recipeKept) + packs.length * 160 + statBytes(statUpdates);
    this.write(bytes, () => {
      for (const [k, v] of chunkRows) this.chunks.put(k, v);
      // Bytes replace a recipe (materialize): one form per oid.
      for (const [k, v] of fileRows) {
        this.files.put(k, v);
        this.recipes?.remove(k);
      }
      for (const [k, v] of recipeKept) this.recipes?.put(k, v);
      for (const p of packs) this.packs.put(p.id, { size: p.size, entries: p.entries.length, created });
      if (statUpdates) this.applyStats(statUpdates);
    });
  }

  /**
   * The recipe rows a batch may record: none for content held already (one form per oid; a
   * recipe row is never replaced), and none whose inputs the index (or the batch) lacks in chunks
   * (docs/format.md §6.5a): such a batch is refused with EMISSING, or, reindexing, the row skipped.
   */
  private recipesWithInputs(recipeRows: [Buffer, Buffer][], fileRows: [Buffer, Buffer][], orphans: 'refuse' | 'skip'): [Buffer, Buffer][] {
    const adding = new Set(fileRows.map(([k]) => k.toString('hex')));
    const kept: [Buffer, Buffer][] = [];
    for (const [k, v] of recipeRows) {
      if (adding.has(k.toString('hex')) || this.hasContent(k)) continue;
      const lacking = recipeInputs(parseRecipe(v, `recipe ${k.toString('hex')}`)).find((i) => !adding.has(i.oid) && !this.hasFile(Buffer.from(i.oid, 'hex')));
      if (!lacking) kept.push([k, v]);
      else if (orphans === 'refuse') {
        throw new MstoreError('EMISSING', `recipe ${k.toString('hex')} reads ${lacking.name} (${lacking.oid}), which this store no longer holds in chunks; nothing was recorded`);
      }
    }
    return kept;
  }

  /** Every row of one database, each decoded; lmdb's or the decoder's failure is a damaged index. */
  private *rows<T>(db: Database<Buffer, Buffer>, decode: (v: Buffer) => T): Generator<[Buffer, T]> {
    const it = this.read(() => db.getRange()[Symbol.iterator]());
    for (;;) {
      const next = this.read(() => {
        const r = it.next();
        return r.done ? undefined : ([r.value.key, decode(r.value.value as unknown as Buffer)] as [Buffer, T]);
      });
      if (!next) return;
      yield next;
    }
  }

  /** Every chunk row: id and location. */
  chunkRows(): Generator<[Buffer, ChunkLocation]> {
    return this.rows(this.chunks, decodeLocation);
  }

  /** Every file row: oid, size and manifest. */
  fileRows(): Generator<[Buffer, { size: number; chunks: ManifestChunk[] }]> {
    return this.rows(this.files, decodeFileRow);
  }

  /** Every recipe row: oid and record bytes. */
  *recipeRows(): Generator<[Buffer, Buffer]> {
    if (this.recipes) yield* this.rows(this.recipes, (v) => Buffer.from(v));
  }

  packInfo(id: string): { size: number; entries: number; created: string } | undefined {
    return this.read(() => this.packs.get(id));
  }

  /**
   * gc's index switch, one durable transaction: chunk rows moved to their new packs,
   * dead chunk and file rows dropped, old pack records replaced by the new ones.
   */
  switchPacks(change: {
    newPacks: PackInfo[];
    moveChunks: Map<string, ChunkLocation>;
    dropChunks: Buffer[];
    dropFiles: Buffer[];
    dropRecipes: Buffer[];
    dropPacks: string[];
    dropStats: string[];
  }): void {
    const created = clockNow().toISOString();
    const rows = [...change.moveChunks].map(([k, loc]) => {
      const v = Buffer.alloc(44);
      Buffer.from(loc.pack, 'hex').copy(v, 0);
      v.writeBigUInt64LE(BigInt(loc.offset), 32);
      v.writeUInt32LE(loc.length, 40);
      return [Buffer.from(k, 'hex'), v] as const;
    });
    rows.sort((a, b) => Buffer.compare(a[0], b[0]));
    this.write(rows.length * 76 + change.newPacks.length * 160, () => {
      for (const [k, v] of rows) this.chunks.put(k, v);
      for (const k of change.dropChunks) this.chunks.remove(k);
      for (const k of change.dropFiles) this.files.remove(k);
      for (const k of change.dropRecipes) this.recipes?.remove(k);
      for (const id of change.dropPacks) this.packs.remove(id);
      for (const p of change.newPacks) this.packs.put(p.id, { size: p.size, entries: p.entries.length, created });
      for (const k of change.dropStats) this.stats.remove(k);
    });
  }

  updateStats(updates: Map<string, StatEntry | null>): void {
    if (updates.size === 0) return;
    this.write(statBytes(updates), () => this.applyStats(updates));
  }

  private applyStats(updates: Map<string, StatEntry | null>): void {
    for (const [k, v] of [...updates].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
      // lmdb keys are limited (~1978 bytes): such a path is simply never cached (re-hashed each time).
      if (Buffer.byteLength(k) > MAX_STAT_KEY) continue;
      if (v === null) this.stats.remove(k);
      else this.stats.put(k, v);
    }
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}
