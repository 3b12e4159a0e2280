/**
 * `import` of the files layout (docs/format.md §16.2): each version directory (a directory
 * holding `.mstore/version.json`) becomes a new version on a line, with new ids, carrying
 * the description, author, parameters, metrics, training data, status and `meta` of its
 * version.json. Pass 1 checks every header (and parses every version.json) before anything
 * is written; pass 2, under the lock, extracts into a private directory under the store's
 * tmp/ (never following a symlink: links are made last, and nothing lies beneath one), stores
 * the files as commit does, and records the versions oldest first.
 */
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, rm, symlink } from 'node:fs/promises';
import { open } from '../../lib/fsutil.js';
import { MstoreError } from '../../lib/errors.js';
import type { Store } from '../../repo/store.js';
import { ContentWriter } from '../../repo/content.js';
import { identifyFile } from '../../repo/identify.js';
import { gitMode, type WorkFile } from '../../repo/workspace.js';
import type { FlatTree } from '../../repo/git.js';
import { defaultAuthor } from '../../repo/version-write.js';
import { writeVersion } from '../../repo/version-write.js';
import { DEFAULT_LINE, META_PATH, META_SCHEMA, STATUSES, checkLineName, lineRef, refCollision, type VersionMeta } from '../../repo/versions.js';
import { bareName, entryNameProblem, linkTargetProblem, MAX_META_BYTES, byteOrder } from '../../format/bundle.js';
import { pathProblem, showName } from '../../format/path-names.js';
import { readBody, readTar, skipBody } from './tar-reader.js';
import type { ImportOptions, ImportResult, ImportedVersion, ImportedRef } from './import-result.js';

interface FilesEntry {
  /** Without a directory's trailing '/'. */
  name: string;
  type: 'file' | 'directory' | 'symlink';
  size: number;
  mode: number;
  linkname: string;
}

interface CarriedMeta {
  line: string | undefined;
  description: string;
  author: { name: string; email: string } | undefined;
  params: Record<string, unknown>;
  metrics: Record<string, unknown>;
  trainingData: string[];
  status: string | null;
  meta: Record<string, unknown>;
  created: string;
}

interface VersionDir {
  root: string;
  meta: CarriedMeta;
  /** Files and symlinks, relative to the root, sorted; `.mstore/` excluded. */
  files: FilesEntry[];
}

interface FilesPlan {
  entries: FilesEntry[];
  versions: VersionDir[];
}

const META_SUFFIX = `/${META_PATH}`;

function isObject(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/** The metadata a version carries over, or the problem with its version.json. */
function carriedMeta(data: Buffer): CarriedMeta | string {
  let v: unknown;
  try {
    v = JSON.parse(data.toString('utf8'));
  } catch (e) {
    return `not valid JSON (${(e as Error).message})`;
  }
  if (!isObject(v)) return 'not a JSON object';
  const m = v as Partial<VersionMeta> & Record<string, unknown>;
  if (m.schema !== META_SCHEMA) return `schema is ${JSON.stringify(m.schema)}, expected "${META_SCHEMA}"`;
  if (m.line !== undefined && typeof m.line !== 'string') return '"line" must be a string';
  if (m.description !== undefined && typeof m.description !== 'string') return '"description" must be a string';
  for (const k of ['params', 'metrics', 'meta'] as const) if (m[k] !== undefined && !isObject(m[k])) return `"${k}" must be an object`;
  if (m.training_data !== undefined && !(Array.isArray(m.training_data) && m.training_data.every((x) => typeof x === 'string'))) {
    return '"training_data" must be an array of strings';
  }
  if (m.status !== undefined && m.status !== null && !(STATUSES as readonly unknown[]).includes(m.status)) {
    return `"status" ${JSON.stringify(m.status)} is not one of ${STATUSES.join(', ')}`;
  }
  const a = m.author as unknown;
  if (a !== undefined && !(isObject(a) && typeof a.name === 'string' && typeof a.email === 'string' && a.name && a.email)) {
    return '"author" must be {"name": string, "email": string}';
  }
  return {
    line: m.line,
    description: m.description ?? '',
    author: a as CarriedMeta['author'],
    params: m.params ?? {},
    metrics: m.metrics ?? {},
    trainingData: m.training_data ?? [],
    status: m.status ?? null,
    meta: m.meta ?? {},
    created: typeof m.created === 'string' ? m.created : '',
  };
}

/** A name relative to the archive: GNU tar's leading './' (of `tar -cf x.tar .`) is dropped. */
function localName(name: string): string {
  return name.startsWith('./') ? name.slice(2) : name;
}

async function scanFiles(file: string, display: string): Promise<FilesPlan> {
  const bad = (name: string, why: string): MstoreError => new MstoreError('EBADINPUT', `${display}: entry ${showName(name)}: ${why}; nothing imported`, { what: name });
  const entries: FilesEntry[] = [];
  const byName = new Map<string, FilesEntry>();
  const metas = new Map<string, CarriedMeta>();
  for await (const e of readTar(file, display)) {
    const h = e.header;
    const type = h.type;
    if (type !== 'file' && type !== 'directory' && type !== 'symlink') {
      throw bad(h.name, `a ${type === 'link' ? 'hard link' : (type ?? 'entry of unknown type')}; only files, directories and symlinks are imported`);
    }
    const local = localName(h.name);
    if (local === '' && type === 'directory') {
      // `tar -cf x.tar .` starts with the directory './' itself: nothing to import
      entries.push({ name: '', type, size: 0, mode: 0, linkname: '' });
      await skipBody(e);
      continue;
    }
    const problem = entryNameProblem(local, type === 'directory');
    if (problem) throw bad(h.name, problem);
    const name = type === 'directory' ? bareName(local) : local;
    if (byName.has(name)) throw bad(h.name, 'appears twice');
    const entry: FilesEntry = { name, type, size: h.size ?? 0, mode: h.mode ?? 0o644, linkname: h.linkname ?? '' };
    if (type !== 'file' && entry.size !== 0) throw bad(h.name, `a ${type} with ${entry.size} bytes of content`);
    if (type === 'file' && name.endsWith(META_SUFFIX)) {
      if (entry.size > MAX_META_BYTES) throw bad(h.name, `larger than ${MAX_META_BYTES} bytes`);
      const m = carriedMeta(await readBody(e));
      if (typeof m === 'string') throw bad(h.name, m);
      metas.set(name.slice(0, -META_SUFFIX.length), m);
    } else await skipBody(e);
    entries.push(entry);
    byName.set(name, entry);
  }
  if (!entries.length) throw new MstoreError('EBADINPUT', `${display}: empty archive`);
  const roots = [...metas.keys()].sort(byteOrder);
  if (!roots.length) throw new MstoreError('EBADINPUT', `${display}: no version directory (a directory holding ${META_PATH}); nothing imported`);
  for (const r of roots) {
    const parts = r.split('/');
    if (parts.includes('.mstore') || parts.includes('.git')) throw bad(`${r}${META_SUFFIX}`, "a version directory inside a '.mstore' or '.git' directory");
    const inner = roots.find((o) => o.startsWith(`${r}/`));
    if (inner) throw bad(`${inner}${META_SUFFIX}`, `a version directory inside the version directory '${r}'`);
  }
  const rootOf = (name: string): string | undefined => roots.find((r) => name === r || name.startsWith(`${r}/`));
  const files = new Map<string, FilesEntry[]>(roots.map((r) => [r, []]));
  for (const e of entries) {
    if (e.name === '') continue;
    const root = rootOf(e.name);
    if (!root) {
      if (e.type === 'directory' && roots.some((r) => r.startsWith(`${e.name}/`))) continue;
      throw bad(e.name, 'outside every version directory');
    }
    // Parents inside the archive must be directories: nothing is ever written beneath a file or a symlink.
    const parts = e.name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = byName.get(parts.slice(0, i).join('/'));
      if (parent && parent.type !== 'directory') throw bad(e.name, `its parent '${parent.name}' is a ${parent.type === 'symlink' ? 'symlink' : 'file'} in the archive`);
    }
    if (e.name === root) {
      if (e.type !== 'directory') throw bad(e.name, 'a version directory that is not a directory');
      continue;
    }
    const rel = e.name.slice(root.length + 1);
    const relParts = rel.split('/');
    if (relParts[0] === '.mstore') {
      if (!((rel === '.mstore' && e.type === 'directory') || (rel === META_PATH && e.type === 'file'))) {
        throw bad(e.name, `only ${META_PATH} is imported from a version's .mstore directory`);
      }
      continue;
    }
    if (relParts.includes('.mstore') || relParts.includes('.git')) throw bad(e.name, "'.mstore' and '.git' are never part of a version");
    if (e.type === 'directory') continue;
    // Names a version cannot hold (docs/format.md §7.9), checked on every file and symlink path.
    const nameRule = pathProblem(rel, { symlink: e.type === 'symlink' });
    if (nameRule) throw bad(e.name, nameRule);
    if (e.type === 'symlink') {
      const linkProblem = linkTargetProblem(rel, e.linkname, (p) => byName.get(`${root}/${p}`)?.type === 'symlink');
      if (linkProblem) throw bad(e.name, linkProblem);
    }
    files.get(root)!.push({ ...e, name: rel });
  }
  const versions = roots.map((r) => ({ root: r, meta: metas.get(r)!, files: files.get(r)!.sort((a, b) => byteOrder(a.name, b.name)) }));
  // Oldest first, so that each line's versions keep their order.
  versions.sort((a, b) => (a.meta.created < b.meta.created ? -1 : a.meta.created > b.meta.created ? 1 : byteOrder(a.root, b.root)));
  return { entries, versions };
}


export async function importFiles(
  store: Store,
  opts: ImportOptions & { file: string; display: string; size: number },
): Promise<ImportResult> {
  const { file, display } = opts;
  const plan = await scanFiles(file, display);
  const lineOf = (v: VersionDir): string => opts.line ?? v.meta.line ?? DEFAULT_LINE;
  for (const v of plan.versions) {
    try {
      checkLineName(lineOf(v));
    } catch (e) {
      if (opts.line !== undefined) throw e;
      throw new MstoreError('EBADINPUT', `${display}: ${v.root}${META_SUFFIX}: ${(e as Error).message}; nothing imported`);
    }
  }
  return store.withLock('import', async () => {
    const repo = store.repo;
    for (const line of new Set(plan.versions.map(lineOf))) {
      if (line === DEFAULT_LINE || (await repo.readRef(lineRef(line)))) continue;
      const clash = (await refCollision(repo, `refs/tags/${line}/v001`)) ?? (await refCollision(repo, lineRef(line)));
      if (clash) throw new MstoreError(opts.line !== undefined ? 'EBADNAME' : 'EBADINPUT', `line '${line}' collides with the existing ref ${clash}; nothing imported`, { what: line });
    }
    const work = path.join(store.tmpDir, `import-${randomBytes(6).toString('hex')}`);
    await mkdir(work);
    try {
      // 1. Extract, checking each entry against pass 1. Symlinks last: nothing is written through one.
      const changed = (why: string): MstoreError => new MstoreError('EBADINPUT', `${display} changed after it was checked (${why}); nothing imported`);
      let i = 0;
      let done = 0;
      for await (const e of readTar(file, display, (n) => {
        done += n;
        opts.onProgress?.({ done, total: opts.size });
      })) {
        const want = plan.entries[i++];
        const h = e.header;
        const name = h.type === 'directory' ? bareName(localName(h.name)) : localName(h.name);
        if (!want || want.name !== name || want.type !== h.type || want.size !== (h.size ?? 0) || want.linkname !== (h.linkname ?? '')) {
          throw changed(`entry ${i} is '${h.name}'`);
        }
        if (want.type !== 'file' || want.name === '') {
          await skipBody(e);
          continue;
        }
        const abs = path.join(work, ...name.split('/'));
        await mkdir(path.dirname(abs), { recursive: true });
        const fh = await open(abs, 'wx', 0o600);
        let written = 0;
        try {
          for await (const b of e.body) {
            let off = 0;
            while (off < b.length) off += (await fh.write(b, off, b.length - off)).bytesWritten;
            written += b.length;
          }
        } finally {
          await fh.close();
        }
        if (written !== want.size) throw changed(`'${name}' has ${written} bytes`);
        await chmod(abs, want.mode & 0o111 ? 0o755 : 0o644);
      }
      if (i !== plan.entries.length) throw changed(`it has ${i} entries, not ${plan.entries.length}`);
      for (const e of plan.entries) {
        if (e.type !== 'symlink') continue;
        const abs = path.join(work, ...e.name.split('/'));
        await mkdir(path.dirname(abs), { recursive: true });
        await symlink(e.linkname, abs);
      }

      // 2. Content into packs, for every version, as commit stores it.
      const writer = new ContentWriter(store.sink(), store.hasher, store.config.chunking);
      const trees: { v: VersionDir; flat: FlatTree; blobs: Map<string, Buffer>; bytes: number }[] = [];
      try {
        for (const v of plan.versions) {
          const flat: FlatTree = new Map();
          const blobs = new Map<string, Buffer>();
          let bytes = 0;
          for (const f of v.files) {
            const abs = path.join(work, ...v.root.split('/'), ...f.name.split('/'));
            const s = await lstat(abs, { bigint: true });
            const wf: WorkFile = {
              path: f.name,
              abs,
              isLink: f.type === 'symlink',
              stat: { size: Number(s.size), mtimeNs: s.mtimeNs.toString(), ctimeNs: s.ctimeNs.toString(), ino: Number(s.ino), mode: Number(s.mode) },
            };
            const id = await identifyFile(repo, wf, store.config.textMaxBytes, writer);
            flat.set(f.name, { mode: gitMode(wf), blob: id.blob });
            blobs.set(id.blob, id.gitContent);
            bytes += id.size;
          }
          trees.push({ v, flat, blobs, bytes });
        }
        await writer.finish();
      } catch (e) {
        await writer.abort();
        throw e;
      }

      // 3. One version per directory, oldest first: blobs, metadata, tree, commit, tag, refs.
      const out: ImportedVersion[] = [];
      const refs: ImportedRef[] = [];
      for (const { v, flat, blobs, bytes } of trees) {
        const line = lineOf(v);
        const description = v.meta.description.trim() ? v.meta.description : `imported ${v.root}`;
        const { version, commit: commitId, entries } = await writeVersion(store, {
          line, flat, gitBlobs: blobs, totalBytes: bytes, message: description, params: v.meta.params, metrics: v.meta.metrics,
          trainingData: v.meta.trainingData, status: v.meta.status, meta: v.meta.meta, author: v.meta.author ?? defaultAuthor(),
          reason: 'import', refMessage: `import ${path.basename(file)}: ${v.root}`,
        });
        for (const m of entries) refs.push({ ref: m.ref, old: m.old, new: m.new!, action: m.old ? 'fast-forward' : 'created' });
        out.push({ name: version, commit: commitId, from: v.root, line });
      }
      return {
        format: 'files' as const,
        file,
        versions: out,
        refs,
        gitObjects: 0,
        chunks: 0,
        newChunks: 0,
        newBytes: writer.newBytes,
        verifiedBytes: 0,
      };
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
}
