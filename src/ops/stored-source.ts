/**
 * A stored file's bytes as the merge reads them (merge/source.ts): at any position, straight
 * from the store's packs, every chunk re-hashed to its id as it is read, so the merge never
 * sees an unverified byte and needs no checkout into scratch space first. The last chunk read
 * is kept: the merge reads blocks of rows (1 MiB) from chunks of up to 8 MiB, and each chunk is
 * then read and hashed once, not once per block. Memory: one chunk.
 *
 * Chunk ids prove the parts, not the whole: a damaged manifest (chunks listed in another order,
 * or another file's chunks) reads as valid chunks. With `whole`, every chunk also goes, in file
 * order, into the file's sha256 (the merge reads front to back, so this is one more hash of
 * each byte, not a re-read: chunks a read skips are read to fill the gap), and `proveWhole()`
 * reads what no read reached and checks that digest against the oid.
 *
 * A rebuild of recipe content whose every byte is held back until it hashed to its content id
 * (a checkout) reads its base file through `unchecked()`: that hash proves the chunks, as a
 * stored file's hash proves its own, and `findDamage()` names a damaged chunk after a mismatch.
 */
import { createHash, type Hash } from 'node:crypto';
import { MstoreError } from '../lib/errors.js';
import { sha256 } from '../lib/hashing.js';
import type { ContentReader } from '../repo/content-reader.js';
import type { ManifestChunk } from '../repo/index-db.js';
import type { GitRepo } from '../repo/git.js';
import type { VersionFile } from '../repo/version-files.js';
import { BufferSource, type ByteSource, type ModelEntry, type ModelFiles } from '../merge/source.js';

export class StoredSource implements ByteSource {
  readonly size: number;
  private readonly chunks: ManifestChunk[];
  /** Where each chunk starts in the file. */
  private readonly starts: number[];
  private last: { index: number; data: Buffer } | undefined;
  /** The last load asked for, settled (load). */
  private loading: Promise<unknown> = Promise.resolve();
  private readonly whole: Hash | undefined;
  /** Chunks [0, hashed) went into `whole`, in order. */
  private hashed = 0;

  /** The content `oid` of `reader`'s store; `name` (a version's path) names it in errors. */
  constructor(
    private readonly reader: ContentReader,
    readonly name: string,
    readonly oid: string,
    opts: { whole?: boolean } = {},
  ) {
    const m = reader.manifest(oid, name);
    this.size = m.size;
    this.chunks = m.chunks;
    this.starts = [];
    let at = 0;
    for (const c of m.chunks) {
      this.starts.push(at);
      at += c.length;
    }
    if (at !== m.size) throw new MstoreError('ECORRUPT', `${name}: manifest of ${oid} adds up to ${at} bytes, expected ${m.size}`);
    if (opts.whole) this.whole = createHash('sha256');
  }

  /** The index of the chunk holding byte `pos` (binary search over the starts). */
  private chunkAt(pos: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid] <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /**
   * Chunk `i`, verified; with `whole`, every chunk up to it hashed in order first. Loads run one
   * at a time, in the order asked: reads may overlap (the merge reads the adapter's next factors
   * while it merges a tensor), and the file's hash must take its chunks in order.
   */
  private load(i: number): Promise<Buffer> {
    const p = this.loading.then(() => this.loadNow(i));
    this.loading = p.catch(() => undefined);
    return p;
  }

  private async loadNow(i: number): Promise<Buffer> {
    if (this.last?.index === i) return this.last.data;
    if (this.whole) {
      while (this.hashed < i) this.whole.update(await this.reader.chunk(this.chunks[this.hashed++], this.name));
    }
    const data = await this.reader.chunk(this.chunks[i], this.name);
    if (this.whole && this.hashed === i) {
      this.whole.update(data);
      this.hashed++;
    }
    this.last = { index: i, data };
    return data;
  }

  read(into: Uint8Array, pos: number): Promise<void> {
    return this.readThrough(into, pos, (i) => this.load(i));
  }

  /** Fills `into` from `pos` with the chunks `load` gives. */
  private async readThrough(into: Uint8Array, pos: number, load: (i: number) => Promise<Buffer>): Promise<void> {
    if (pos < 0 || pos + into.length > this.size) {
      throw new MstoreError('EBADINPUT', `${this.name}: bytes ${pos}-${pos + into.length} asked of a file of ${this.size}`);
    }
    let done = 0;
    for (let i = into.length ? this.chunkAt(pos) : this.chunks.length; done < into.length; i++) {
      const data = await load(i);
      const from = pos + done - this.starts[i];
      const n = Math.min(data.length - from, into.length - done);
      into.set(data.subarray(from, from + n), done);
      done += n;
    }
  }

  /**
   * The same bytes read without re-hashing each chunk to its id, for a rebuild whose output is
   * hashed to its content id before anything is published: that hash proves every byte read, and
   * findDamage() names a damaged chunk after a mismatch. Its own last chunk: views read at once.
   */
  unchecked(): ByteSource {
    if (this.whole) throw new Error('internal: unchecked() on a StoredSource opened with whole (its reads prove the file)');
    // The chunk read last and the one after it, already being read: the merge reads front to back,
    // and a chunk read while the kernel works on the last block costs the kernel no wait.
    let last: { index: number; data: Promise<Buffer> } | undefined;
    let ahead: { index: number; data: Promise<Buffer> } | undefined;
    const fetch = (i: number): { index: number; data: Promise<Buffer> } => {
      const data = this.reader.chunkUnchecked(this.chunks[i], this.name);
      data.catch(() => undefined); // a read ahead that fails is thrown where it is awaited, if it is
      return { index: i, data };
    };
    const load = (i: number): Promise<Buffer> => {
      if (last?.index !== i) {
        last = ahead?.index === i ? ahead : fetch(i);
        ahead = i + 1 < this.chunks.length ? fetch(i + 1) : undefined;
      }
      return last.data;
    };
    const close = async (): Promise<void> => {
      await Promise.allSettled([last?.data, ahead?.data]);
      last = ahead = undefined;
    };
    return { name: this.name, size: this.size, read: (into, pos) => this.readThrough(into, pos, load), close };
  }

  /** Throws naming the first chunk that does not re-hash to its id (each read through chunk()); resolves when none. */
  async findDamage(): Promise<void> {
    for (const c of this.chunks) await this.reader.chunk(c, this.name);
  }

  /** With `whole`: reads the chunks no read reached, and throws unless the file hashes to its oid. */
  async proveWhole(): Promise<void> {
    if (!this.whole) throw new Error('internal: proveWhole() on a StoredSource opened without whole');
    // The same content through the same manifest, proven by another source of this reader (a base
    // file read through a recipe and through its version), is not read again.
    const key = `${this.oid}:${sha256(Buffer.concat(this.chunks.map((c) => c.id))).toString('hex')}`;
    if (this.reader.wholeProven.has(key)) return;
    while (this.hashed < this.chunks.length) await this.load(this.hashed);
    const digest = this.whole.copy().digest('hex');
    if (digest !== this.oid) throw new MstoreError('ECORRUPT', `${this.name}: content hashes to ${digest}, expected ${this.oid} (file manifest damaged)`);
    this.reader.wholeProven.add(key);
  }

  async close(): Promise<void> {
    this.last = undefined;
  }
}

/** A file of a StoredDir: content in the store's chunks, bytes at hand (a git blob, a recipe's text), or a symlink. */
export type StoredEntry = { kind: 'stored'; oid: string } | { kind: 'bytes'; load: () => Promise<Uint8Array> } | { kind: 'link' };

/** A config (JSON) the merge reads whole into memory: an adapter's, a base's, a shard index. */
const TEXT_MAX_BYTES = 64 * 1024 * 1024;

/**
 * A model directory whose files are in a store, as the merge reads one (merge/source.ts): a
 * directory of a stored version (VersionDir), or a recipe's inputs (recipe.ts). Every stored file
 * it opens is read with `whole`; `proveWhole()` then proves each of them whole, so a merge that
 * read from here used only bytes equal to what the store holds under their ids.
 */
export class StoredDir implements ModelFiles {
  /** The stored files opened here, by the key resolve() gives them (the path read, links followed). */
  private readonly opened = new Map<string, StoredSource[]>();

  /**
   * `name` names the directory in errors, and `display(rel)` each file. Without `whole` (a
   * recipe's rebuild, whose output is hashed to its content id instead), files are read with
   * their chunks verified and proveWhole() is not available.
   */
  constructor(
    private readonly reader: ContentReader,
    readonly name: string,
    private readonly entries: Map<string, StoredEntry>,
    protected readonly display: (rel: string) => string,
    private readonly whole = true,
  ) {}

  protected entry(rel: string): StoredEntry {
    const e = this.entries.get(rel);
    if (!e) throw new MstoreError('ENOTFOUND', `${this.display(rel)} is not there`);
    return e;
  }

  async list(): Promise<ModelEntry[]> {
    return [...this.entries]
      .map(([path, e]) => ({ path, link: e.kind === 'link' }))
      .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  /** The paths of the files whose content is in chunks. */
  stored(): string[] {
    return [...this.entries].filter(([, e]) => e.kind === 'stored').map(([rel]) => rel);
  }

  /** The entry a read of `rel` reads (a subclass follows links), how errors name it, and its key in `opened`. */
  protected async resolve(rel: string): Promise<{ entry: StoredEntry; display: string; key: string }> {
    return { entry: this.entry(rel), display: this.display(rel), key: rel };
  }

  async source(rel: string): Promise<ByteSource> {
    const { entry: e, display, key } = await this.resolve(rel);
    if (e.kind === 'link') throw new MstoreError('EBADINPUT', `${display} is a symlink; the merge reads regular files`);
    if (e.kind === 'bytes') return new BufferSource(display, await e.load());
    const s = new StoredSource(this.reader, display, e.oid, { whole: this.whole });
    if (this.whole) this.opened.set(key, [...(this.opened.get(key) ?? []), s]);
    return s;
  }

  /** A StoredDir of its own holds no links (a recipe's inputs); VersionDir follows a version's. */
  async linkTarget(_rel: string): Promise<'inside' | 'outside' | undefined> {
    return undefined;
  }

  async text(rel: string): Promise<string> {
    const src = await this.source(rel);
    if (src.size > TEXT_MAX_BYTES) throw new MstoreError('EBADINPUT', `${this.display(rel)} is ${src.size} bytes; the merge reads configs of at most ${TEXT_MAX_BYTES}`);
    const data = Buffer.alloc(src.size);
    await src.read(data, 0);
    if (src instanceof StoredSource && this.whole) await src.proveWhole();
    return data.toString('utf8');
  }

  /**
   * Proves whole (StoredSource.proveWhole) every stored file opened here, and the stored files
   * of `also` (paths in the directory) whether opened or not.
   */
  async proveWhole(also: string[] = []): Promise<void> {
    if (!this.whole) throw new Error('internal: proveWhole() on a StoredDir opened without whole');
    for (const list of this.opened.values()) for (const s of list) await s.proveWhole();
    for (const rel of also) {
      const { entry: e, display, key } = await this.resolve(rel);
      if (e.kind === 'stored' && !this.opened.has(key)) await new StoredSource(this.reader, display, e.oid, { whole: true }).proveWhole();
    }
  }
}

/** The most links a read follows from one name (a loop of links ends there). */
const MAX_LINK_HOPS = 8;

/**
 * A directory of a stored version (`dir`, '' for the root): its files from the store, small ones
 * from their git blobs. A symlink the merge reads is followed, as a checkout's would be, to the
 * file it names in the same version (a Hugging Face snapshot links its files to blobs/).
 */
export class VersionDir extends StoredDir {
  private readonly files: Map<string, VersionFile>;
  private readonly all: Map<string, VersionFile>;
  /** Every directory of the version (a prefix of some file's path). */
  private readonly dirs = new Set<string>();
  readonly dir: string;

  /** `files`: every file of the version; `label` (the version's name) and a file's path name it in errors. */
  constructor(
    private readonly repo: GitRepo,
    reader: ContentReader,
    private readonly label: string,
    dir: string,
    files: VersionFile[],
  ) {
    const prefix = dir ? `${dir}/` : '';
    const mine = new Map<string, VersionFile>();
    for (const f of files) if (f.path.startsWith(prefix)) mine.set(f.path.slice(prefix.length), f);
    const display = (rel: string): string => `${label}:${prefix}${rel}`;
    const entries = new Map<string, StoredEntry>();
    for (const [rel, f] of mine) entries.set(rel, entryOf(repo, f, display(rel)));
    super(reader, `${label}:${dir || '.'}`, entries, display);
    this.dir = dir;
    this.files = mine;
    this.all = new Map(files.map((f) => [f.path, f]));
    for (const f of files) for (let i = f.path.indexOf('/'); i > 0; i = f.path.indexOf('/', i + 1)) this.dirs.add(f.path.slice(0, i));
  }

  /**
   * The version path `p` with every link in it followed, one component at a time as a checkout's
   * file system would (a `..` after a link to a directory leaves that directory); undefined when
   * it leaves the version or names no file.
   */
  private async real(p: string, hops = 0): Promise<string | undefined> {
    const parts = p.split('/');
    const at: string[] = [];
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (!at.length) return undefined;
        at.pop();
        continue;
      }
      at.push(part);
      const here = at.join('/');
      const f = this.all.get(here);
      if (f?.kind !== 'link') {
        // A component something follows must be a directory of the version, as on a file system.
        if (i < parts.length - 1 && parts.slice(i + 1).some((x) => x !== '' && x !== '.') && !this.dirs.has(here)) return undefined;
        continue;
      }
      if (hops === MAX_LINK_HOPS) throw new MstoreError('EBADINPUT', `${this.label}:${p}: more than ${MAX_LINK_HOPS} links deep`);
      const target = Buffer.from(await this.repo.readBlob(f.blob, `${this.label}:${f.path}`)).toString('utf8');
      if (target.startsWith('/')) return undefined;
      at.pop();
      return this.real([...at, target, ...parts.slice(i + 1)].join('/'), hops + 1);
    }
    return this.all.has(at.join('/')) ? at.join('/') : undefined;
  }

  protected override async resolve(rel: string): Promise<{ entry: StoredEntry; display: string; key: string }> {
    const own = this.file(rel);
    if (own.kind !== 'link') return { entry: entryOf(this.repo, own, this.display(rel)), display: this.display(rel), key: own.path };
    const to = await this.real(own.path);
    if (!to) {
      const target = Buffer.from(await this.repo.readBlob(own.blob, this.display(rel))).toString('utf8');
      throw new MstoreError('EBADINPUT', `${this.display(rel)} is a symlink to ${target}, which is no file of the version`);
    }
    const display = `${this.display(rel)} (-> ${to})`;
    return { entry: entryOf(this.repo, this.all.get(to)!, display), display, key: to };
  }

  override async linkTarget(rel: string): Promise<'inside' | 'outside' | undefined> {
    const to = await this.real(this.file(rel).path).catch(() => undefined);
    if (!to) return undefined;
    return !this.dir || to.startsWith(`${this.dir}/`) ? 'inside' : 'outside';
  }

  /** The version file a read of `rel` reads: `rel`'s own, or the one its links lead to. */
  async fileThrough(rel: string): Promise<VersionFile> {
    const own = this.file(rel);
    if (own.kind !== 'link') return own;
    const to = await this.real(own.path);
    if (!to) throw new MstoreError('EBADINPUT', `${this.display(rel)} is a symlink to no file of the version`);
    return this.all.get(to)!;
  }

  /** The version file at `rel` (in the directory). */
  file(rel: string): VersionFile {
    const f = this.files.get(rel);
    if (!f) throw new MstoreError('ENOTFOUND', `${this.name}/${rel} is not in the version`);
    return f;
  }
}

function entryOf(repo: GitRepo, f: VersionFile, display: string): StoredEntry {
  return f.kind === 'lfs' ? { kind: 'stored', oid: f.oid } : f.kind === 'link' ? { kind: 'link' } : { kind: 'bytes', load: () => repo.readBlob(f.blob, display) };
}
