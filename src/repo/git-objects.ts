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
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import { PACK_TYPES, Pack, applyDelta } from './git-pack-read.js';
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

/** The `<type> <size>\0` header git hashes in front of an object's content. */
export function objectHeader(type: string, size: number): Buffer {
  return Buffer.from(`${type} ${size}\0`);
}

export function hashObject(type: string, content: Uint8Array): string {
  return createHash('sha1').update(objectHeader(type, content.length)).update(content).digest('hex');
}

/** How many recently read objects, each up to RECENT_MAX_BYTES, GitObjects keeps. */
const RECENT_OBJECTS = 16;
const RECENT_MAX_BYTES = 64 * 1024;

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
   * Like has(), from the pack and fan-out folders as last listed: nothing is listed again on
   * a miss (in a store written within the last seconds every miss re-listed the pack folder,
   * the racy rule). For a writer deciding whether to add an object, to whom an object named
   * absent by mistake costs one duplicate copy in its new pack, never a wrong answer.
   */
  hasListed(oid: string): boolean {
    if (!/^[0-9a-f]{40}$/.test(oid)) return false;
    const bin = Buffer.from(oid, 'hex');
    if (this.packList().some((p) => p.find(bin) >= 0)) return true;
    const folders = this.fanOut ?? this.fanOutFolders();
    return folders.has(oid.slice(0, 2)) && !!statSync(this.loosePath(oid), { throwIfNoEntry: false });
  }

  /** Lists the pack folder again if it changed (a writer that has just added a pack). */
  relist(): void {
    this.packList(true);
  }

  /**
   * The ids of `oids` not present, from one look at the pack folder and the loose fan-out
   * (a first push asks about 9,000 absent objects; has() looks again after each miss). An
   * object written meanwhile may be named absent: the asker sends it, and the receiver skips it.
   */
  absent(oids: string[]): string[] {
    const list = this.packList(true);
    const folders = this.fanOutFolders();
    return oids.filter((oid) => {
      if (!/^[0-9a-f]{40}$/.test(oid)) return true;
      const bin = Buffer.from(oid, 'hex');
      if (list.some((p) => p.find(bin) >= 0)) return false;
      return !(folders.has(oid.slice(0, 2)) && statSync(this.loosePath(oid), { throwIfNoEntry: false }));
    });
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
    return this.fanOutFolders().has(oid.slice(0, 2));
  }

  private fanOutFolders(): ReadonlySet<string> {
    const stamp = statSync(this.objdir, { bigint: true, throwIfNoEntry: false })?.mtimeNs;
    if (stamp === undefined) return new Set();
    if (!this.fanOut || stamp !== this.fanOutStamp || this.fanOutAt - stamp <= RACY_NS) {
      this.fanOut = new Set(readdirOr(this.objdir));
      this.fanOutStamp = stamp;
      this.fanOutAt = BigInt(Date.now()) * 1_000_000n;
    }
    return this.fanOut;
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
