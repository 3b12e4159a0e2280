/**
 * What `export` writes and `import` reads (docs/format.md §16): the names and limits of both
 * tar layouts, git's object framing, the links between git objects, the rules for entry
 * names and symlink targets, and a streaming tar reader that turns tar-stream's errors
 * into one-line MstoreErrors.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { extract, type Header } from 'tar-stream';
import { MstoreError } from '../lib/errors.js';
import { SLOT_BYTES } from '../repo/content.js';
import { MANIFEST_RECORD } from '../repo/index-db.js';

export type ExportFormat = 'files' | 'bundle';
export const EXPORT_FORMATS: readonly ExportFormat[] = ['files', 'bundle'];

/** The first entry of a bundle, and the marker that tells the two layouts apart. */
export const BUNDLE_HEADER = 'mstore-bundle.json';
export const BUNDLE_FORMAT = 'mstore.bundle/1';

export const GIT_ENTRY = /^git\/([0-9a-f]{40})$/;
export const FILE_ENTRY = /^files\/([0-9a-f]{64})$/;
export const CHUNK_ENTRY = /^chunks\/([0-9a-f]{64})$/;

/** Limits on what import reads into memory. */
export const MAX_BUNDLE_HEADER_BYTES = 64 * 1024 * 1024;
export const MAX_GIT_OBJECT_BYTES = 128 * 1024 * 1024;
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
/** mstore reads content in runs of at most one slot: a larger chunk could never be checked out. */
export const MAX_CHUNK_BYTES = SLOT_BYTES;
export const MAX_META_BYTES = 16 * 1024 * 1024;
export const MAX_NAME_BYTES = 4096;

export interface BundleVersion {
  name: string;
  commit: string;
}

export interface BundleHeader {
  format: typeof BUNDLE_FORMAT;
  /** Full ref name -> value (a tag object for tags, a commit for line heads). */
  refs: Record<string, string>;
  versions: BundleVersion[];
}

/** The bytes of mstore-bundle.json: keys in a fixed order, refs sorted, two-space JSON, one newline. */
export function renderBundleHeader(refs: Map<string, string>, versions: BundleVersion[]): Buffer {
  const sortedRefs: Record<string, string> = {};
  for (const r of [...refs.keys()].sort(byteOrder)) sortedRefs[r] = refs.get(r)!;
  const vs = [...versions].sort((a, b) => byteOrder(a.name, b.name)).map((v) => ({ name: v.name, commit: v.commit }));
  const h: BundleHeader = { format: BUNDLE_FORMAT, refs: sortedRefs, versions: vs };
  return Buffer.from(`${JSON.stringify(h, null, 2)}\n`);
}

const HEX40 = /^[0-9a-f]{40}$/;
const REF_COMPONENT = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

/** A ref mstore may hold: refs/tags/... or refs/heads/..., components as for tag and line names. */
export function validRefName(ref: string): boolean {
  const m = /^refs\/(tags|heads)\/(.+)$/.exec(ref);
  if (!m) return false;
  return m[2].split('/').every((c) => REF_COMPONENT.test(c) && !c.endsWith('.lock') && !c.endsWith('.') && !c.includes('..'));
}

/** Parses and checks mstore-bundle.json; returns the problem as a string when it is not acceptable. */
export function parseBundleHeader(data: Buffer): BundleHeader | string {
  let v: unknown;
  try {
    v = JSON.parse(data.toString('utf8'));
  } catch (e) {
    return `not valid JSON (${(e as Error).message})`;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return 'not a JSON object';
  const h = v as Partial<BundleHeader>;
  if (h.format !== BUNDLE_FORMAT) return `format is ${JSON.stringify(h.format)}, expected "${BUNDLE_FORMAT}"`;
  if (!h.refs || typeof h.refs !== 'object' || Array.isArray(h.refs)) return '"refs" must be an object';
  for (const [ref, value] of Object.entries(h.refs)) {
    if (!validRefName(ref)) return `ref name '${ref}' is not allowed (refs/tags/... or refs/heads/..., plain components)`;
    if (typeof value !== 'string' || !HEX40.test(value)) return `ref '${ref}' does not hold a 40-hex object id`;
  }
  if (!Array.isArray(h.versions) || h.versions.length === 0) return '"versions" must be a non-empty array';
  const names = new Set<string>();
  const commits = new Set<string>();
  for (const ver of h.versions as unknown[]) {
    const x = ver as Partial<BundleVersion> | null;
    if (!x || typeof x.name !== 'string' || typeof x.commit !== 'string' || !HEX40.test(x.commit)) {
      return '"versions" entries must be {"name": string, "commit": 40 hex}';
    }
    if (names.has(x.name) || commits.has(x.commit)) return `version ${x.name} (${x.commit}) is listed twice`;
    names.add(x.name);
    commits.add(x.commit);
  }
  return { format: BUNDLE_FORMAT, refs: h.refs as Record<string, string>, versions: h.versions as BundleVersion[] };
}

// ---------------------------------------------------------------------------------------
// git objects

export type GitType = 'commit' | 'tree' | 'blob' | 'tag';
const GIT_TYPES = new Set(['commit', 'tree', 'blob', 'tag']);

export function sha1Hex(data: Uint8Array): string {
  return createHash('sha1').update(data).digest('hex');
}

/** `<type> <len>\0<content>`: the bytes git hashes to name an object. */
export function wrapObject(type: string, content: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(`${type} ${content.length}\0`), content]);
}

/** Splits git's framing; the problem as a string when the bytes are not a framed object. */
export function unwrapObject(data: Buffer): { type: GitType; content: Buffer } | string {
  const nul = data.indexOf(0);
  if (nul < 0 || nul > 32) return 'no git object header';
  const m = /^(commit|tree|blob|tag) (0|[1-9][0-9]*)$/.exec(data.subarray(0, nul).toString('latin1'));
  if (!m) return 'bad git object header';
  const content = data.subarray(nul + 1);
  if (Number(m[2]) !== content.length) return `header says ${m[2]} bytes, the object has ${content.length}`;
  return { type: m[1] as GitType, content };
}

export interface Link {
  oid: string;
  type: GitType;
  /** How the linking object names it, for messages: `tree`, `parent`, `object`, or a tree entry name. */
  via: string;
  /** The mode of a tree entry. */
  mode?: string;
}

/** Tree entry names git's fsck and mstore's checkout refuse. */
function unsafeTreeName(name: string): boolean {
  return name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0') || name.toLowerCase() === '.git';
}

/**
 * The objects an object points at: a commit its tree and parents, a tag its object, a tree
 * its entries (gitlinks and unsafe names are refused). Throws an Error naming the problem.
 */
export function objectLinks(type: GitType, content: Buffer): Link[] {
  const links: Link[] = [];
  if (type === 'blob') return links;
  if (type === 'tree') {
    let o = 0;
    let prevKey: Buffer | undefined;
    const names = new Set<string>();
    while (o < content.length) {
      const sp = content.indexOf(0x20, o);
      const nul = sp < 0 ? -1 : content.indexOf(0, sp);
      if (sp < 0 || nul < 0 || nul + 21 > content.length) throw new Error('truncated tree entry');
      const mode = content.subarray(o, sp).toString('latin1');
      const name = content.subarray(sp + 1, nul).toString('utf8');
      const oid = content.subarray(nul + 1, nul + 21).toString('hex');
      if (unsafeTreeName(name)) throw new Error(`tree entry name '${name}' is not allowed`);
      // git's order: bytes, a directory compared as if its name ended in '/'; each name once
      const key = Buffer.from(mode === '40000' ? `${name}/` : name);
      if (names.has(name)) throw new Error(`tree names '${name}' twice`);
      if (prevKey && Buffer.compare(prevKey, key) >= 0) throw new Error(`tree entries are not sorted (at '${name}')`);
      names.add(name);
      prevKey = key;
      if (mode === '40000') links.push({ oid, type: 'tree', via: name, mode });
      else if (mode === '100644' || mode === '100755' || mode === '120000') links.push({ oid, type: 'blob', via: name, mode });
      else throw new Error(`tree entry '${name}' has mode ${mode} (only 40000, 100644, 100755, 120000)`);
      o = nul + 21;
    }
    return links;
  }
  const end = content.indexOf('\n\n');
  const head = content.subarray(0, end < 0 ? content.length : end).toString('utf8').split('\n');
  if (type === 'commit') {
    const tree = /^tree ([0-9a-f]{40})$/.exec(head[0] ?? '');
    if (!tree) throw new Error('commit does not start with a tree line');
    links.push({ oid: tree[1], type: 'tree', via: 'tree' });
    let i = 1;
    for (; i < head.length; i++) {
      const p = /^parent ([0-9a-f]{40})$/.exec(head[i]);
      if (!p) break;
      links.push({ oid: p[1], type: 'commit', via: 'parent' });
    }
    if (!/^author .* <.*> [0-9]+ [+-][0-9]{4}$/.test(head[i] ?? '') || !/^committer .* <.*> [0-9]+ [+-][0-9]{4}$/.test(head[i + 1] ?? '')) {
      throw new Error('commit lacks well-formed author and committer lines after its parents');
    }
    return links;
  }
  const obj = /^object ([0-9a-f]{40})$/.exec(head[0] ?? '');
  const t = /^type (commit|tree|blob|tag)$/.exec(head[1] ?? '');
  if (!obj || !t) throw new Error('tag does not start with object and type lines');
  links.push({ oid: obj[1], type: t[1] as GitType, via: 'object' });
  return links;
}

export function isGitType(t: string): t is GitType {
  return GIT_TYPES.has(t);
}

/** Sum of the chunk lengths of a manifest (36-byte records), or a problem string. */
export function manifestSize(manifest: Buffer): number | string {
  if (manifest.length % MANIFEST_RECORD !== 0) return `manifest length ${manifest.length} is not a multiple of ${MANIFEST_RECORD}`;
  let size = 0;
  for (let o = 0; o < manifest.length; o += MANIFEST_RECORD) {
    const len = manifest.readUInt32LE(o + 32);
    if (len === 0 || len > MAX_CHUNK_BYTES) return `manifest names a chunk of ${len} bytes`;
    size += len;
  }
  return size;
}

// ---------------------------------------------------------------------------------------
// names and paths

/** Byte order of the UTF-8 encodings (what `LC_ALL=C sort` gives). */
export function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/**
 * The problem with a tar entry name, or undefined. Names are relative, '/'-separated,
 * without empty, '.' or '..' components, NUL or backslash. A directory may end in one '/'.
 */
export function entryNameProblem(name: string, isDir: boolean): string | undefined {
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) return `name longer than ${MAX_NAME_BYTES} bytes`;
  if (name.includes('\0')) return 'NUL in name';
  if (name.startsWith('/')) return 'absolute path';
  const bare = isDir && name.endsWith('/') ? name.slice(0, -1) : name;
  if (bare === '') return 'empty name';
  if (bare.includes('\\')) return 'backslash in name';
  const parts = bare.split('/');
  if (parts.includes('..')) return "'..' component (escapes the archive)";
  if (parts.includes('.')) return "'.' component";
  if (parts.includes('')) return 'empty path component';
  return undefined;
}

/**
 * The problem with a symlink at `linkPath` (relative to its version directory) pointing at
 * `target`, or undefined when following it can only land inside the version directory:
 * the target is relative, its '..' components never climb above the directory, and no '..'
 * comes after a component that is itself a symlink (`isLink`), whose real place differs
 * from its name (with `sub -> .`, `sub/..` is the parent of the version directory).
 */
export function linkTargetProblem(linkPath: string, target: string, isLink: (p: string) => boolean): string | undefined {
  if (!target) return 'empty symlink target';
  if (target.includes('\0')) return 'NUL in symlink target';
  if (target.startsWith('/')) return `absolute symlink target '${target}'`;
  const stack = linkPath.split('/').slice(0, -1);
  let throughLink: string | undefined;
  for (const c of target.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (throughLink !== undefined) return `symlink target '${target}' climbs out of the symlink '${throughLink}'`;
      if (!stack.length) return `symlink target '${target}' leaves its version directory`;
      stack.pop();
    } else {
      stack.push(c);
      if (throughLink === undefined && isLink(stack.join('/'))) throughLink = stack.join('/');
    }
  }
  return undefined;
}

/** The entry name without a directory's trailing '/'. */
export function bareName(name: string): string {
  return name.endsWith('/') ? name.slice(0, -1) : name;
}

// ---------------------------------------------------------------------------------------
// reading tar files

export interface TarEntry {
  header: Header;
  /** The content; must be consumed (readBody or skipBody) before the next entry is read. */
  body: AsyncIterable<Buffer>;
}

/**
 * Streams the entries of a tar file. Errors of the archive itself (bad checksum, truncated
 * data, unreadable file) become one-line EBADINPUT errors naming the file and the last entry.
 */
export async function* readTar(file: string, display: string, onBytes?: (n: number) => void): AsyncGenerator<TarEntry> {
  const rs = createReadStream(file, { highWaterMark: 1024 * 1024 });
  const ex = extract();
  rs.on('error', (e) => ex.destroy(e));
  if (onBytes) rs.on('data', (d) => onBytes(d.length));
  rs.pipe(ex as unknown as NodeJS.WritableStream);
  let last: string | undefined;
  const it = ex[Symbol.asyncIterator]();
  try {
    for (;;) {
      let r: IteratorResult<{ header: Header } & AsyncIterable<Buffer>>;
      try {
        r = (await it.next()) as IteratorResult<{ header: Header } & AsyncIterable<Buffer>>;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code ? `cannot read it (${code})` : `not a valid tar archive (${(e as Error).message.split('\n')[0]})`;
        throw new MstoreError('EBADINPUT', `${display}: ${why}${last !== undefined && !code ? ` after entry '${last}'` : ''}`);
      }
      if (r.done) return;
      last = r.value.header.name;
      yield { header: r.value.header, body: r.value };
    }
  } finally {
    rs.destroy();
    await it.return?.().catch(() => undefined);
  }
}

/** Reads a whole entry into memory; its declared size was already checked against a limit. */
export async function readBody(e: TarEntry): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of e.body) parts.push(b);
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
}

export async function skipBody(e: TarEntry): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  for await (const _ of e.body) {
    // discard
  }
}
