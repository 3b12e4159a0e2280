/**
 * `export`: versions into one tar file (docs/format.md §16), deterministically: the same
 * versions give the same bytes. Two layouts:
 *
 *  - files: one directory per version (`v003/`, `merged/v002/`) holding the model files and
 *    `.mstore/version.json`, for people and other tools;
 *  - bundle: `mstore-bundle.json`, every git object the versions need (their whole history),
 *    then the file manifests and chunks of their lfs content, for `mstore import`.
 *
 * Nothing is buffered whole: lfs files stream from the packs (verified on the way), chunks
 * are read one at a time. The tar is written to a temporary name beside the output, fsynced
 * and renamed, so a failed export leaves no partial file.
 */
import { parseRecipe, recipeInputs } from '../../format/recipe.js';
import { openReader } from '../recipe.js';
import { unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { pack as tarPack, type Header, type Pack } from 'tar-stream';
import { MstoreError } from '../../lib/errors.js';
import type { Store } from '../../repo/store.js';
import { sha256 } from '../../lib/hashing.js';
import { encodeManifest } from '../../repo/index-db.js';
import { packPath } from '../../repo/pack.js';
import { parsePointer } from '../../format/pointer.js';
import { fsyncDir, open, rename, tmpName } from '../../lib/fsutil.js';
import { META_PATH, readMeta, resolveRev } from '../../repo/versions.js';
import { modelEntries } from '../../repo/version-files.js';
import type { FileMode } from '../../repo/git.js';
import {
  BUNDLE_HEADER, MAX_GIT_OBJECT_BYTES, byteOrder, bundleObjectLinks, entryNameProblem, renderBundleHeader,
  linkTargetProblem, type BundleVersion, type ExportFormat,
} from '../../format/bundle.js';
import { isGitType, wrapObject, type GitType } from '../../format/git-links.js';
import { MAX_CHUNK_BYTES } from './bundle-store.js';

export interface ExportOptions {
  revs: string[];
  /** The tar file to write (replaced atomically if it exists). */
  output: string;
  format?: ExportFormat;
  onProgress?: (p: { done: number; total: number }) => void;
}

export interface ExportResult {
  format: ExportFormat;
  file: string;
  /** Size of the tar file. */
  bytes: number;
  versions: BundleVersion[];
  /** The refs the bundle carries (empty for the files layout). */
  refs: Record<string, string>;
  entries: number;
  gitObjects: number;
  manifests: number;
  chunks: number;
  /** Bytes of file content (lfs files) in the archive. */
  contentBytes: number;
  warnings: string[];
}

interface Selected extends BundleVersion {
  /** Commit time (seconds): the mtime of the version's entries. */
  time: number;
  tree: string;
}

/** Resolves the revisions to distinct versions (commits with a version record), sorted by name. */
async function selectVersions(store: Store, revs: string[]): Promise<Selected[]> {
  if (!revs.length) throw new MstoreError('EUSAGE', 'name at least one version to export');
  const repo = store.repo;
  const byCommit = new Map<string, Selected>();
  const byName = new Map<string, string>();
  for (const rev of revs) {
    const commit = await resolveRev(repo, rev);
    if (byCommit.has(commit)) continue;
    const meta = await readMeta(repo, commit);
    if (!meta || typeof meta.version !== 'string') {
      throw new MstoreError('EBADINPUT', `'${rev}' (commit ${commit.slice(0, 12)}) is not an mstore version (no ${META_PATH})`);
    }
    const problem = entryNameProblem(meta.version, false);
    if (problem) throw new MstoreError('ECORRUPT', `'${rev}': version name '${meta.version}' cannot name a directory (${problem})`);
    const other = byName.get(meta.version);
    if (other) throw new MstoreError('ECORRUPT', `commits ${other.slice(0, 12)} and ${commit.slice(0, 12)} both call themselves ${meta.version}`);
    const c = await repo.readCommit(commit);
    byName.set(meta.version, commit);
    byCommit.set(commit, { name: meta.version, commit, time: c.committer.timestamp, tree: c.tree });
  }
  return [...byCommit.values()].sort((a, b) => byteOrder(a.name, b.name));
}

/**
 * The refs a bundle carries: every tag and line head that leads to an exported commit,
 * with the objects on its tag chain. Every exported version must be named by one.
 */
async function selectRefs(store: Store, versions: Selected[]): Promise<Map<string, string>> {
  const repo = store.repo;
  const commits = new Set(versions.map((v) => v.commit));
  const refs = new Map<string, string>();
  for (const prefix of ['refs/heads', 'refs/tags']) {
    for (const name of await repo.listRefs(prefix)) {
      const ref = `${prefix}/${name}`;
      const value = await repo.readRef(ref);
      if (!value) continue;
      let commit: string;
      try {
        commit = await repo.peelToCommit(value);
      } catch {
        continue; // a tag of a tree or blob names no version
      }
      if (commits.has(commit)) refs.set(ref, value);
    }
  }
  for (const v of versions) {
    let named = false;
    for (const value of refs.values()) if ((await repo.peelToCommit(value)) === v.commit) named = true;
    if (!named) throw new MstoreError('EBADINPUT', `${v.name} (${v.commit.slice(0, 12)}) has no tag or line pointing at it: an import could not name it`);
  }
  return refs;
}

/** Every git object reachable from `roots` (tag chains, commits and all their ancestors, trees, blobs), by id. */
async function gitClosure(store: Store, roots: string[]): Promise<Map<string, GitType>> {
  const repo = store.repo;
  const types = new Map<string, GitType>();
  const todo: { oid: string; type?: GitType }[] = roots.map((oid) => ({ oid }));
  while (todo.length) {
    const { oid, type } = todo.pop()!;
    if (types.has(oid)) continue;
    if (type === 'blob') {
      types.set(oid, 'blob'); // read when it is written
      continue;
    }
    let o: { type: string; content: Uint8Array };
    try {
      o = await repo.readRawObject(oid);
    } catch (e) {
      throw new MstoreError('ECORRUPT', `git object ${oid} cannot be read (${(e as Error).message.split('\n')[0]})`);
    }
    if (!isGitType(o.type) || (type && o.type !== type)) throw new MstoreError('ECORRUPT', `git object ${oid} is a ${o.type}, expected a ${type ?? 'known type'}`);
    types.set(oid, o.type);
    let links;
    try {
      links = bundleObjectLinks(o.type, Buffer.from(o.content.buffer, o.content.byteOffset, o.content.byteLength));
    } catch (e) {
      throw new MstoreError('ECORRUPT', `git object ${oid}: ${(e as Error).message}`);
    }
    for (const l of links) if (!types.has(l.oid)) todo.push({ oid: l.oid, type: l.type });
  }
  return types;
}

interface Content {
  /** oid hex -> manifest bytes and size (a recipe's inputs included). */
  manifests: Map<string, { manifest: Buffer; size: number }>;
  /** oid hex -> recipe record, for content kept as a recipe (docs/format.md §18). */
  recipes: Map<string, Buffer>;
  /** chunk id hex -> length, pack, offset, and a file that uses it (for messages). */
  chunks: Map<string, { length: number; pack: string; offset: number; use: string }>;
  bytes: number;
}

/**
 * The lfs content of the versions (not of their ancestors), checked against the index: manifests
 * and chunks, and for content kept as a recipe its record and the manifests and chunks of the
 * files it reads.
 */
async function collectContent(store: Store, versions: Selected[]): Promise<Content> {
  const repo = store.repo;
  const index = store.index;
  const content: Content = { manifests: new Map(), recipes: new Map(), chunks: new Map(), bytes: 0 };
  const addManifest = (oid: string, size: number, use: string): void => {
    const f = index.file(Buffer.from(oid, 'hex'));
    if (!f) throw new MstoreError('EMISSING', `${use}: content ${oid} is not in the store (missing file manifest)`);
    const total = f.chunks.reduce((a, c) => a + c.length, 0);
    if (total !== f.size || f.size !== size) {
      throw new MstoreError('ECORRUPT', `${use}: manifest of ${oid} adds up to ${total} bytes, the pointer says ${size}`);
    }
    for (const c of f.chunks) {
      const id = c.id.toString('hex');
      if (content.chunks.has(id)) continue;
      const loc = index.chunk(c.id);
      if (!loc) throw new MstoreError('EMISSING', `${use}: chunk ${id} is missing from the store`);
      if (loc.length !== c.length) throw new MstoreError('ECORRUPT', `${use}: chunk ${id} has length ${loc.length} in the index, ${c.length} in the manifest`);
      if (c.length > MAX_CHUNK_BYTES) throw new MstoreError('EBADINPUT', `${use}: chunk ${id} is larger than ${MAX_CHUNK_BYTES} bytes`);
      content.chunks.set(id, { length: c.length, pack: loc.pack, offset: loc.offset, use });
    }
    content.manifests.set(oid, { manifest: encodeManifest(f.chunks), size: f.size });
  };
  const counted = new Set<string>();
  for (const v of versions) {
    for (const [p, e] of modelEntries(await repo.readFlatTree(v.tree))) {
      if (e.mode === '120000') continue;
      const ptr = parsePointer(await repo.readBlob(e.blob), `${v.name}:${p}`);
      if (!ptr || counted.has(ptr.oid)) continue;
      counted.add(ptr.oid);
      const use = `${v.name}:${p}`;
      const record = index.heldAsRecipe(Buffer.from(ptr.oid, 'hex'));
      if (record) {
        const recipe = parseRecipe(record, `${use} (its recipe)`);
        if (recipe.size !== ptr.size) throw new MstoreError('ECORRUPT', `${use}: the recipe of ${ptr.oid} makes ${recipe.size} bytes, the pointer says ${ptr.size}`);
        content.recipes.set(ptr.oid, record);
        for (const i of recipeInputs(recipe)) if (!content.manifests.has(i.oid)) addManifest(i.oid, i.size, `${use} (its recipe's input ${i.name})`);
      } else if (!content.manifests.has(ptr.oid)) addManifest(ptr.oid, ptr.size, use);
      content.bytes += ptr.size;
    }
  }
  return content;
}

// ---------------------------------------------------------------------------------------
// the tar writer

type EntryHeader = Pick<Header, 'name' | 'type' | 'mode' | 'size' | 'mtime'> & { linkname?: string };

/**
 * A tar-stream pack drained into a temporary file beside the output. Every header has
 * uid/gid 0, empty user and group names and the given mtime, and no pax timestamps.
 */
class TarFile {
  private readonly pack: Pack = tarPack();
  private readonly pump: Promise<void>;
  bytes = 0;
  entries = 0;

  private constructor(
    private readonly fh: FileHandle,
    private readonly tmp: string,
    readonly output: string,
  ) {
    this.pump = (async () => {
      try {
        for await (const b of this.pack as AsyncIterable<Buffer>) {
          let off = 0;
          while (off < b.length) off += (await this.fh.write(b, off, b.length - off)).bytesWritten;
          this.bytes += b.length;
        }
      } catch (e) {
        this.pack.destroy(e as Error);
        throw e;
      }
    })();
    this.pump.catch(() => undefined); // surfaces through finish() and entry callbacks
  }

  static async create(output: string): Promise<TarFile> {
    const tmp = tmpName(output);
    let fh: FileHandle;
    try {
      fh = await open(tmp, 'wx', 0o644);
    } catch (e) {
      throw new MstoreError('EBADINPUT', `cannot write ${output}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return new TarFile(fh, tmp, output);
  }

  private header(h: EntryHeader): Header {
    return { ...h, uid: 0, gid: 0, uname: '', gname: '' } as Header;
  }

  /** An entry with its whole body (or none: directories, symlinks). */
  add(h: EntryHeader, body?: Buffer): Promise<void> {
    this.entries++;
    return new Promise((resolve, reject) => {
      const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
      if (body) this.pack.entry(this.header({ ...h, size: body.length }), body, cb);
      else this.pack.entry(this.header({ ...h, size: 0 }), cb);
    });
  }

  /** An entry whose body is written by `fill` through `write` (backpressure: await what write returns). */
  async stream(h: EntryHeader, fill: (write: (b: Buffer) => Promise<void> | undefined) => Promise<void>): Promise<void> {
    this.entries++;
    let settle!: (err?: Error | null) => void;
    const done = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
    done.catch(() => undefined);
    const sink = this.pack.entry(this.header(h), settle);
    const write = (b: Buffer): Promise<void> | undefined => {
      if (sink.write(b)) return undefined;
      return new Promise((resolve, reject) => {
        const onDrain = (): void => {
          sink.off('error', onError);
          resolve();
        };
        const onError = (e: Error): void => {
          sink.off('drain', onDrain);
          reject(e);
        };
        sink.once('drain', onDrain);
        sink.once('error', onError);
      });
    };
    try {
      await fill(write);
    } catch (e) {
      sink.destroy(e as Error);
      throw e;
    }
    sink.end(undefined);
    await done;
  }

  async finish(): Promise<number> {
    this.pack.finalize();
    await this.pump;
    await this.fh.datasync();
    await this.fh.close();
    await rename(this.tmp, this.output);
    await fsyncDir(path.dirname(this.output));
    return this.bytes;
  }

  async abort(e: unknown): Promise<void> {
    this.pack.destroy(e instanceof Error ? e : new Error(String(e)));
    await this.pump.catch(() => undefined);
    await this.fh.close().catch(() => undefined);
    await unlink(this.tmp).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------

export async function exportVersions(store: Store, opts: ExportOptions): Promise<ExportResult> {
  const format = opts.format ?? 'bundle';
  const versions = await selectVersions(store, opts.revs);
  const output = path.resolve(opts.output);
  const content = await collectContent(store, versions);
  let refs = new Map<string, string>();
  let objects = new Map<string, GitType>();
  if (format === 'bundle') {
    refs = await selectRefs(store, versions);
    objects = await gitClosure(store, [...new Set([...refs.values(), ...versions.map((v) => v.commit)])]);
  }
  const tar = await TarFile.create(output);
  const warnings: string[] = [];
  let done = 0;
  const progress = (n: number): void => {
    done += n;
    opts.onProgress?.({ done, total: content.bytes });
  };
  try {
    if (format === 'bundle') await writeBundle(store, tar, versions, refs, objects, content, progress);
    else await writeFiles(store, tar, versions, warnings, progress);
    const bytes = await tar.finish();
    return {
      format,
      file: output,
      bytes,
      versions: versions.map((v) => ({ name: v.name, commit: v.commit })),
      refs: Object.fromEntries([...refs].sort((a, b) => byteOrder(a[0], b[0]))),
      entries: tar.entries,
      gitObjects: objects.size,
      manifests: content.manifests.size,
      chunks: format === 'bundle' ? content.chunks.size : 0,
      contentBytes: content.bytes,
      warnings,
    };
  } catch (e) {
    await tar.abort(e);
    throw e;
  }
}

async function writeBundle(
  store: Store,
  tar: TarFile,
  versions: Selected[],
  refs: Map<string, string>,
  objects: Map<string, GitType>,
  content: Content,
  progress: (n: number) => void,
): Promise<void> {
  const repo = store.repo;
  const mtime = new Date(Math.max(...versions.map((v) => v.time)) * 1000);
  const file = { type: 'file' as const, mode: 0o644, mtime };
  await tar.add({ ...file, name: BUNDLE_HEADER, size: 0 }, renderBundleHeader(refs, versions));
  for (const oid of [...objects.keys()].sort()) {
    let o: { type: string; content: Uint8Array };
    try {
      o = await repo.readRawObject(oid);
    } catch (e) {
      throw new MstoreError('ECORRUPT', `git object ${oid} cannot be read (${(e as Error).message.split('\n')[0]})`);
    }
    if (o.type !== objects.get(oid)) throw new MstoreError('ECORRUPT', `git object ${oid} is a ${o.type}, expected a ${objects.get(oid)}`);
    const data = wrapObject(o.type, o.content);
    if (data.length > MAX_GIT_OBJECT_BYTES) throw new MstoreError('EBADINPUT', `git object ${oid} is larger than ${MAX_GIT_OBJECT_BYTES} bytes; import would refuse it`);
    await tar.add({ ...file, name: `git/${oid}`, size: 0 }, data);
  }
  for (const oid of [...content.recipes.keys()].sort()) {
    await tar.add({ ...file, name: `recipes/${oid}`, size: 0 }, content.recipes.get(oid)!);
  }
  for (const oid of [...content.manifests.keys()].sort()) {
    await tar.add({ ...file, name: `files/${oid}`, size: 0 }, content.manifests.get(oid)!.manifest);
  }
  const handles = new Map<string, FileHandle>();
  try {
    for (const id of [...content.chunks.keys()].sort()) {
      const c = content.chunks.get(id)!;
      let fh = handles.get(c.pack);
      if (!fh) {
        fh = await open(packPath(store.packsDir, c.pack), 'r').catch((e: NodeJS.ErrnoException) => {
          throw new MstoreError('EMISSING', `${c.use}: pack ${c.pack} cannot be opened (${e.code ?? e.message})`);
        });
        handles.set(c.pack, fh);
      }
      const buf = Buffer.alloc(c.length);
      const { bytesRead } = await fh.read(buf, 0, c.length, c.offset);
      if (bytesRead !== c.length || !sha256(buf).equals(Buffer.from(id, 'hex'))) {
        throw new MstoreError('ECORRUPT', `${c.use}: chunk ${id} in pack ${c.pack} is damaged (hash mismatch); nothing exported`);
      }
      await tar.add({ ...file, name: `chunks/${id}`, size: 0 }, buf);
      progress(c.length);
    }
  } finally {
    for (const fh of handles.values()) await fh.close().catch(() => undefined);
  }
}

interface FilesEntry {
  name: string;
  kind: 'dir' | 'git' | 'lfs' | 'link';
  mode: number;
  mtime: Date;
  blob?: string;
  oid?: string;
  size?: number;
  use: string;
  version: string;
  /** The path inside the version directory. */
  path: string;
}

const MODES: Record<FileMode, number> = { '100644': 0o644, '100755': 0o755, '120000': 0o777 };

async function writeFiles(store: Store, tar: TarFile, versions: Selected[], warnings: string[], progress: (n: number) => void): Promise<void> {
  const repo = store.repo;
  const entries = new Map<string, FilesEntry>();
  const links = new Map<string, Set<string>>();
  const dir = (name: string, mtime: Date, use: string): void => {
    const cur = entries.get(`${name}/`);
    if (!cur) entries.set(`${name}/`, { name: `${name}/`, kind: 'dir', mode: 0o755, mtime, use, version: use, path: '' });
    else if (cur.mtime < mtime) cur.mtime = mtime; // a directory shared by versions (a line's) gets the newest time
  };
  const dirsOf = (p: string, mtime: Date, use: string): void => {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) dir(parts.slice(0, i).join('/'), mtime, use);
  };
  for (const v of versions) {
    const mtime = new Date(v.time * 1000);
    const flat = await repo.readFlatTree(v.tree);
    const meta = flat.get(META_PATH)!;
    dirsOf(`${v.name}/x`, mtime, v.name);
    dir(`${v.name}/.mstore`, mtime, v.name);
    entries.set(`${v.name}/${META_PATH}`, {
      name: `${v.name}/${META_PATH}`, kind: 'git', mode: 0o644, mtime, blob: meta.blob, use: `${v.name}:${META_PATH}`, version: v.name, path: META_PATH,
    });
    const versionLinks = new Set<string>();
    links.set(v.name, versionLinks);
    for (const [p, e] of modelEntries(flat)) {
      const problem = entryNameProblem(p, false);
      const use = `${v.name}:${p}`;
      if (problem || p.split('/').includes('.git')) throw new MstoreError('ECORRUPT', `${use}: unsafe path in version tree (${problem ?? "'.git' component"})`);
      const name = `${v.name}/${p}`;
      dirsOf(name, mtime, v.name);
      const base = { name, mode: MODES[e.mode] ?? 0o644, mtime, blob: e.blob, use, version: v.name, path: p };
      if (e.mode === '120000') {
        entries.set(name, { ...base, kind: 'link' });
        versionLinks.add(p);
        continue;
      }
      const ptr = parsePointer(await repo.readBlob(e.blob), use);
      entries.set(name, ptr ? { ...base, kind: 'lfs', oid: ptr.oid, size: ptr.size } : { ...base, kind: 'git' });
    }
  }
  const reader = openReader(store);
  try {
    for (const name of [...entries.keys()].sort(byteOrder)) {
      const e = entries.get(name)!;
      const head = { name, mode: e.mode, mtime: e.mtime };
      if (e.kind === 'dir') await tar.add({ ...head, type: 'directory', size: 0 });
      else if (e.kind === 'git') await tar.add({ ...head, type: 'file', size: 0 }, Buffer.from(await repo.readBlob(e.blob!)));
      else if (e.kind === 'link') {
        const raw = Buffer.from(await repo.readBlob(e.blob!));
        const target = raw.toString('utf8');
        if (!Buffer.from(target).equals(raw) || !target || target.includes('\0')) throw new MstoreError('ECORRUPT', `${e.use}: symlink target is not a UTF-8 path`);
        const problem = linkTargetProblem(e.path, target, (p) => links.get(e.version)!.has(p));
        if (problem) warnings.push(`${e.use}: ${problem}; import refuses such a link`);
        await tar.add({ ...head, type: 'symlink', size: 0, linkname: target });
      } else {
        await tar.stream({ ...head, type: 'file', size: e.size! }, async (write) => {
          const n = await reader.read(e.oid!, e.use, (data, slot) => {
            const w = write(Buffer.from(data));
            if (w) slot.track(w);
          });
          if (n !== e.size) throw new MstoreError('ECORRUPT', `${e.use}: content is ${n} bytes, the pointer says ${e.size}`);
        });
        progress(e.size!);
      }
    }
  } finally {
    await reader.close();
  }
}
