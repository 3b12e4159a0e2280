/**
 * Git objects as bytes: the framing git hashes (docs/format.md §16.3.2), the one parser of
 * trees, commits and tags mstore reads (the store's version records included, through
 * repo/git.ts), and the links one object holds to others (§7.8: tree entries, a commit's tree
 * and parents, a tag's object). Pure: bytes in, fields out; a malformed object is an Error
 * naming the problem, which callers turn into their own MstoreError naming the object. What a bundle further refuses (gitlinks, unsafe names,
 * order) is bundle.ts's.
 */
import { createHash } from 'node:crypto';

export type GitType = 'commit' | 'tree' | 'blob' | 'tag';
const GIT_TYPES = new Set(['commit', 'tree', 'blob', 'tag']);

export function isGitType(t: string): t is GitType {
  return GIT_TYPES.has(t);
}

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

/** The mode of a tree entry that is a gitlink (a submodule's commit, in another repository). */
export const GITLINK_MODE = '160000';
const MODE_TYPES: Record<string, GitType> = { '40000': 'tree', '100644': 'blob', '100755': 'blob', '120000': 'blob', [GITLINK_MODE]: 'commit' };

export interface Link {
  oid: string;
  type: GitType;
  /** How the linking object names it, for messages: `tree`, `parent`, `object`, or a tree entry name. */
  via: string;
  /** The mode of a tree entry. */
  mode?: string;
}

/** One entry of a tree object (§7.8). */
export interface TreeEntry {
  mode: string;
  /** The name as UTF-8 text; when its bytes are not valid UTF-8, undecodable bytes read as U+FFFD and `utf8` is false. */
  name: string;
  utf8: boolean;
  oid: string;
  type: GitType;
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/** A tree's entries in the order the object holds them. Throws an Error naming what is malformed (a cut entry, a mode git does not know). */
export function parseTree(content: Buffer): TreeEntry[] {
  return parseTreeFrom(content).entries;
}

/** A parsed tree with where each entry starts, for parseTreeFrom's reuse. */
export interface ParsedTree {
  raw: Buffer;
  entries: TreeEntry[];
  starts: number[];
}

/**
 * parseTree, reusing what an earlier tree of similar bytes parsed to (`prior`; verify walks a
 * thousand versions whose evolution/ tree each has one entry more than the last, 500,000
 * entries in all). The entries of the longest common leading and trailing byte runs are taken
 * from `prior` (the same bytes parse the same way), only the bytes between are parsed. When
 * those do not parse to exactly their end, the whole tree is parsed: the result is always
 * what parsing `content` alone gives.
 */
export function parseTreeFrom(content: Buffer, prior?: ParsedTree): ParsedTree {
  if (!prior || !prior.entries.length) return { raw: content, ...parseEntries(content, 0, content.length) };
  const old = prior.raw;
  // leading entries whose bytes are all shared
  const lead = commonPrefix(content, old);
  let head = 0;
  while (head < prior.entries.length && entryEnd(prior, head) <= lead) head++;
  // trailing entries whose bytes are all shared (not overlapping the leading ones)
  const trail = Math.min(commonSuffix(content, old), content.length - (head ? entryEnd(prior, head - 1) : 0));
  let tail = prior.entries.length;
  while (tail > head && old.length - prior.starts[tail - 1] <= trail) tail--;
  const from = head ? entryEnd(prior, head - 1) : 0;
  const shift = content.length - old.length;
  const to = tail < prior.entries.length ? prior.starts[tail] + shift : content.length;
  let middle: { entries: TreeEntry[]; starts: number[] };
  try {
    middle = parseEntries(content, from, to);
  } catch {
    return { raw: content, ...parseEntries(content, 0, content.length) };
  }
  return {
    raw: content,
    entries: [...prior.entries.slice(0, head), ...middle.entries, ...prior.entries.slice(tail)],
    starts: [...prior.starts.slice(0, head), ...middle.starts, ...prior.starts.slice(tail).map((x) => x + shift)],
  };
}

function entryEnd(t: ParsedTree, i: number): number {
  return i + 1 < t.starts.length ? t.starts[i + 1] : t.raw.length;
}

/** The length of the longest common prefix of two buffers (native compares, halving). */
function commonPrefix(a: Buffer, b: Buffer): number {
  let lo = 0;
  let hi = Math.min(a.length, b.length);
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (a.compare(b, 0, mid, 0, mid) === 0) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function commonSuffix(a: Buffer, b: Buffer): number {
  let lo = 0;
  let hi = Math.min(a.length, b.length);
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (a.compare(b, b.length - mid, b.length, a.length - mid, a.length) === 0) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

const NON_ASCII = /[\x80-\xff]/;

/** The entries between `from` and `to`, which must end exactly at `to`. */
function parseEntries(content: Buffer, from: number, to: number): { entries: TreeEntry[]; starts: number[] } {
  const entries: TreeEntry[] = [];
  const starts: number[] = [];
  for (let o = from; o < to; ) {
    const sp = content.indexOf(0x20, o);
    const nul = sp < 0 || sp >= to ? -1 : content.indexOf(0, sp);
    if (sp < 0 || nul < 0 || nul + 21 > to) throw new Error('truncated tree entry');
    const mode = content.toString('latin1', o, sp);
    let name = content.toString('latin1', sp + 1, nul);
    let utf8 = true;
    if (NON_ASCII.test(name)) {
      const raw = content.subarray(sp + 1, nul);
      try {
        name = STRICT_UTF8.decode(raw);
      } catch {
        name = raw.toString('utf8');
        utf8 = false;
      }
    }
    const type = MODE_TYPES[mode];
    if (!type) throw new Error(`tree entry '${name}' has mode ${mode}, not one of git's (${Object.keys(MODE_TYPES).join(', ')})`);
    starts.push(o);
    entries.push({ mode, name, utf8, oid: content.toString('hex', nul + 1, nul + 21), type });
    o = nul + 21;
  }
  return { entries, starts };
}

/** A signature line's fields, as isomorphic-git gives them (`timezoneOffset` in minutes, the sign of JavaScript's getTimezoneOffset). */
export interface GitSignature {
  name: string;
  email: string;
  timestamp: number;
  timezoneOffset: number;
}

export interface ParsedCommit {
  tree: string;
  parent: string[];
  author: GitSignature;
  committer: GitSignature;
  /** Everything after the first empty line. */
  message: string;
}

function signature(line: string | undefined, key: 'author' | 'committer'): GitSignature | undefined {
  const m = new RegExp(`^${key} (.*) <(.*)> ([0-9]+) ([+-])([0-9]{2})([0-9]{2})$`).exec(line ?? '');
  if (!m) return undefined;
  const minutes = Number(m[5]) * 60 + Number(m[6]);
  return { name: m[1], email: m[2], timestamp: Number(m[3]), timezoneOffset: minutes === 0 ? 0 : m[4] === '+' ? -minutes : minutes };
}

/** A commit's headers and message (§7.8). Throws an Error naming what is malformed. */
export function parseCommit(content: Buffer): ParsedCommit {
  const end = content.indexOf('\n\n');
  const head = content.subarray(0, end < 0 ? content.length : end).toString('utf8').split('\n');
  const tree = /^tree ([0-9a-f]{40})$/.exec(head[0] ?? '');
  if (!tree) throw new Error('commit does not start with a tree line');
  const parent: string[] = [];
  let i = 1;
  for (; i < head.length; i++) {
    const p = /^parent ([0-9a-f]{40})$/.exec(head[i]);
    if (!p) break;
    parent.push(p[1]);
  }
  const author = signature(head[i], 'author');
  const committer = signature(head[i + 1], 'committer');
  if (!author || !committer) throw new Error('commit lacks well-formed author and committer lines after its parents');
  return { tree: tree[1], parent, author, committer, message: end < 0 ? '' : content.subarray(end + 2).toString('utf8') };
}

export interface ParsedTag {
  object: string;
  type: GitType;
  tag: string;
  message: string;
}

/** A tag's target, its type, its name and message (§7.8). Throws an Error naming what is malformed. */
export function parseTag(content: Buffer): ParsedTag {
  const end = content.indexOf('\n\n');
  const head = content.subarray(0, end < 0 ? content.length : end).toString('utf8').split('\n');
  const obj = /^object ([0-9a-f]{40})$/.exec(head[0] ?? '');
  const t = /^type (commit|tree|blob|tag)$/.exec(head[1] ?? '');
  if (!obj || !t) throw new Error('tag does not start with object and type lines');
  const name = /^tag (.*)$/.exec(head[2] ?? '');
  const message = end < 0 ? '' : content.subarray(end + 2).toString('utf8');
  const sig = message.indexOf('-----BEGIN PGP SIGNATURE-----');
  return { object: obj[1], type: t[1] as GitType, tag: name ? name[1] : '', message: sig < 0 ? message : message.slice(0, sig) };
}

/** The links of an object's content (§7.8), in the order the object holds them. Throws an Error naming what is malformed. */
export function objectLinks(type: GitType, content: Buffer): Link[] {
  if (type === 'blob') return [];
  if (type === 'tree') return parseTree(content).map((e) => ({ oid: e.oid, type: e.type, via: e.name, mode: e.mode }));
  if (type === 'commit') {
    const c = parseCommit(content);
    return [{ oid: c.tree, type: 'tree', via: 'tree' }, ...c.parent.map((p): Link => ({ oid: p, type: 'commit', via: 'parent' }))];
  }
  const t = parseTag(content);
  return [{ oid: t.object, type: t.type, via: 'object' }];
}

/** The links of a framed object (`<type> <len>\0<content>`). Throws an Error naming what is malformed. */
export function framedObjectLinks(data: Buffer): Link[] {
  const o = unwrapObject(data);
  if (typeof o === 'string') throw new Error(o);
  return objectLinks(o.type, o.content);
}
