/**
 * What `export` writes and `import` reads (docs/format.md §16), as pure encode/decode: the
 * names and limits of both tar layouts, the bundle header, which git objects a bundle may hold
 * (git-links.ts has their framing and links), and the rules for entry names and symlink
 * targets. Reading tar files and the limits that come from the store's content format are
 * ops/archive's (tar-reader.ts, bundle-store.ts).
 */
import { GITLINK_MODE, objectLinks, type GitType, type Link } from './git-links.js';
import { nameProblem, showName } from './path-names.js';

export type ExportFormat = 'files' | 'bundle';
export const EXPORT_FORMATS: readonly ExportFormat[] = ['files', 'bundle'];

/** The first entry of a bundle, and the marker that tells the two layouts apart. */
export const BUNDLE_HEADER = 'mstore-bundle.json';
export const BUNDLE_FORMAT = 'mstore.bundle/1';

export const GIT_ENTRY = /^git\/([0-9a-f]{40})$/;
export const FILE_ENTRY = /^files\/([0-9a-f]{64})$/;
export const RECIPE_ENTRY = /^recipes\/([0-9a-f]{64})$/;
export const CHUNK_ENTRY = /^chunks\/([0-9a-f]{64})$/;

/** Limits on what import reads into memory. */
export const MAX_BUNDLE_HEADER_BYTES = 64 * 1024 * 1024;
export const MAX_GIT_OBJECT_BYTES = 128 * 1024 * 1024;
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
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
// git objects (framing and links: git-links.ts)

/**
 * The links of a git object a bundle may hold (§16.5.2): those of git-links.ts, where a tree's
 * entries must further be trees or blobs (no gitlinks), with names a version can hold
 * (path-names.ts), each once, in git's order. Throws an Error naming the problem.
 */
export function bundleObjectLinks(type: GitType, content: Buffer): Link[] {
  const links = objectLinks(type, content);
  if (type !== 'tree') return links;
  let prevKey: Buffer | undefined;
  const names = new Set<string>();
  for (const { via: name, mode } of links) {
    // The one rule for names a version can hold (§7.9); the version record's `.mstore` folder is one.
    const problem = name === '.mstore' && mode === '40000' ? null : nameProblem(name, { symlink: mode === '120000' });
    if (problem) throw new Error(`tree entry name ${showName(name)} is not allowed: ${problem}`);
    // git's order: bytes, a directory compared as if its name ended in '/'; each name once
    const key = Buffer.from(mode === '40000' ? `${name}/` : name);
    if (names.has(name)) throw new Error(`tree names '${name}' twice`);
    if (prevKey && Buffer.compare(prevKey, key) >= 0) throw new Error(`tree entries are not sorted (at '${name}')`);
    names.add(name);
    prevKey = key;
    if (mode === GITLINK_MODE) throw new Error(`tree entry '${name}' has mode ${mode} (only 40000, 100644, 100755, 120000)`);
  }
  return links;
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
