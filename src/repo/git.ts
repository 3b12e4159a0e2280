/**
 * The version records: a bare git repository written with isomorphic-git and read through
 * it only as bytes: trees, commits and tags are parsed by format/git-links.ts (the one
 * parser), so a damaged or missing object is an MstoreError (ECORRUPT, EMISSING) naming the
 * object and what it is, and a tree entry whose name a version cannot hold
 * (format/path-names.ts) is reported by name, never followed. Trees are handled as flat maps
 * (path -> mode + blob id), like git's index.
 * Refs are read and written by their exact full name only (no guessing of namespaces).
 */
import { readFileSync } from 'node:fs';
import { rmdir } from 'node:fs/promises';
import path from 'node:path';
import { gitFs, isoGit } from './git-fs.js';
import { gitObjects, hashObject, type GitObjects } from './git-objects.js';
import { commitContent, tagContent, treeContent, writeLooseObject, type TreeItem } from './git-write.js';
import { RecordCache, type CommitRecord, type TagRecord } from './record-cache.js';
import { RefTable, REFLOG_FILE } from './ref-table.js';
import { MstoreError, errorLine } from '../lib/errors.js';
import { isGitType, objectLinks, parseCommit, parseTag, parseTree, parseTreeFrom, type Link, type ParsedCommit, type ParsedTree, type TreeEntry } from '../format/git-links.js';
import { nameProblem, showName } from '../format/path-names.js';
import { POINTER_MAX_BYTES } from '../format/pointer.js';

export type FileMode = '100644' | '100755' | '120000';

/** Small blobs remembered by pointerCandidate (at most ~1 KiB each). */
const MAX_SMALL_BLOBS = 200_000;
/** Places (tree paths) whose last-read tree readTreeEntriesAt keeps for the next version's. */
const MAX_LAST_TREES = 256;

export interface FlatEntry {
  mode: FileMode;
  /** git blob id (sha1 hex). */
  blob: string;
}

export type FlatTree = Map<string, FlatEntry>;

/** A tree entry a version cannot hold (format/path-names.ts): its path and the rule it breaks. */
export interface BadEntry {
  path: string;
  problem: string;
}

/** One line for the bad entries of a version: `'<path>': <rule>`, the first few. */
export function badEntriesLine(bad: BadEntry[]): string {
  const shown = bad.slice(0, 3).map((b) => `${showName(b.path)}: ${b.problem}`);
  return `${bad.length === 1 ? 'an entry it cannot hold' : `${bad.length} entries it cannot hold`}: ${shown.join('; ')}${bad.length > 3 ? '; ...' : ''}`;
}

/**
 * A damaged or missing object's error with the version (or revision) that needed it put
 * first, once; any other error unchanged.
 */
export function forVersion(version: string, e: unknown): unknown {
  if (e instanceof MstoreError && (e.code === 'ECORRUPT' || e.code === 'EMISSING') && e.where === undefined) {
    return new MstoreError(e.code, `${version}: ${e.message}`, { what: e.what, where: version });
  }
  return e;
}

/** Parses an object's content with `parse` (format/git-links.ts); a malformed one is ECORRUPT naming it. */
function parseAs<T>(oid: string, role: string, content: Buffer, parse: (c: Buffer) => T): T {
  try {
    return parse(content);
  } catch (e) {
    throw new MstoreError('ECORRUPT', `git object ${oid} (${role}) is malformed: ${errorLine(e)}`, { what: oid });
  }
}

export interface Signature {
  name: string;
  email: string;
  timestamp: number;
  timezoneOffset: number;
}

/**
 * A name one tree holds twice (`file`, `dir`) or as both a file and a directory (`both`),
 * among entries `skip` does not exclude; undefined when none. Git sorts a tree's entries by
 * name (a directory's as if it ended in `/`): when they are strictly in that order no name can
 * repeat, and only directory names need looking up among the files.
 */
function duplicateName(entries: TreeEntry[], skip: (e: TreeEntry) => boolean): { kind: 'file' | 'dir' | 'both'; name: string } | undefined {
  let prev: string | undefined;
  let sorted = true;
  let dirs: string[] | undefined;
  // (entries `skip` excludes take part here: distinct names stay distinct without them)
  for (const e of entries) {
    if (e.type === 'commit') continue;
    const key = e.type === 'tree' ? `${e.name}/` : e.name;
    if (prev !== undefined && !(prev < key)) {
      sorted = false;
      break;
    }
    prev = key;
    if (e.type === 'tree') (dirs ??= []).push(e.name);
  }
  if (sorted && !dirs) return undefined;
  const files = new Set<string>();
  const seenDirs = new Set<string>();
  for (const e of entries) {
    if (e.type === 'commit' || skip(e)) continue;
    const set = e.type === 'tree' ? seenDirs : files;
    if (set.has(e.name)) return { kind: e.type === 'tree' ? 'dir' : 'file', name: e.name };
    set.add(e.name);
  }
  for (const d of seenDirs) if (files.has(d)) return { kind: 'both', name: d };
  return undefined;
}

export class GitRepo {
  /** isomorphic-git's pack-index cache, for expandOid (the one read still made through it). */
  private readonly isoCache: object = {};
  /** Object reads (git-objects.ts): loose and packed, each re-hashed. */
  readonly objects: GitObjects;
  /** What listing needs from each record (record-cache.ts); derived, beside the repository. */
  readonly records: RecordCache;
  private readonly small = new Map<string, Buffer | null>();
  private readonly notPointers = new Set<string>();
  private readonly lastTrees = new Map<string, ParsedTree>();
  /** Every ref at once, from a snapshot while it is provably current (ref-table.ts). */
  readonly refTable: RefTable;
  constructor(readonly gitdir: string) {
    this.objects = gitObjects(gitdir);
    this.records = new RecordCache(path.join(gitdir, '..', 'cache', 'records'));
    this.refTable = new RefTable(gitdir, path.join(gitdir, '..', REFLOG_FILE));
  }

  private get base() {
    return { fs: gitFs, gitdir: this.gitdir };
  }

  static async init(gitdir: string): Promise<GitRepo> {
    await (await isoGit()).init({ fs: gitFs, gitdir, bare: true, defaultBranch: 'latest' });
    return new GitRepo(gitdir);
  }

  async writeBlob(data: Uint8Array): Promise<string> {
    return writeLooseObject(this.gitdir, 'blob', data);
  }

  async hashBlob(data: Uint8Array): Promise<string> {
    return hashObject('blob', data);
  }

  /**
   * An object's type and content (without git's `<type> <len>\0` header), re-hashed by
   * isomorphic-git on read. Absent: EMISSING; unreadable, not hashing to its id, or not of
   * the `expected` type: ECORRUPT. `role` says what the object is, for the message.
   */
  async readObjectAs(oid: string, role: string, expected?: string): Promise<{ type: string; content: Buffer }> {
    const o = await this.objects.get(oid, role);
    if (expected && o.type !== expected) throw new MstoreError('ECORRUPT', `git object ${oid} (${role}) is a ${o.type}, not a ${expected}`, { what: oid });
    return o;
  }

  /** Parses an object with `parse` (format/git-links.ts); a malformed one is ECORRUPT naming it. */
  private async parsed<T>(oid: string, role: string, type: string, parse: (c: Buffer) => T): Promise<T> {
    return parseAs(oid, role, (await this.readObjectAs(oid, role, type)).content, parse);
  }

  /**
   * An object's type and links (format/git-links.ts), read and re-hashed; damage is an error
   * naming the object. `badName`: the first entry of a tree whose name a version cannot hold.
   */
  async readLinks(oid: string): Promise<{ type: string; links: Link[]; badName?: string }> {
    const o = await this.readObjectAs(oid, 'object');
    if (!isGitType(o.type)) throw new MstoreError('ECORRUPT', `git object ${oid} has type ${o.type}`, { what: oid });
    let links: Link[];
    try {
      links = objectLinks(o.type, o.content);
    } catch (e) {
      throw new MstoreError('ECORRUPT', `git object ${oid} (${o.type}) is malformed: ${errorLine(e)}`, { what: oid });
    }
    let badName: string | undefined;
    if (o.type === 'tree') {
      for (const l of links) {
        const problem = l.via === '.mstore' && l.type === 'tree' ? null : nameProblem(l.via, { symlink: l.mode === '120000' });
        if (problem) {
          badName = `tree entry ${showName(l.via)}: ${problem}`;
          break;
        }
      }
    }
    return { type: o.type, links, ...(badName ? { badName } : {}) };
  }

  async readBlob(oid: string, role = 'blob'): Promise<Uint8Array> {
    return (await this.readObjectAs(oid, role, 'blob')).content;
  }

  /**
   * A blob's content when it is small enough to be a git-lfs pointer (POINTER_MAX_BYTES), else
   * null; remembered per process, so the blob a thousand versions share is read once (verify,
   * contentOf). A damaged or missing blob throws, every time.
   */
  async pointerCandidate(oid: string, role = 'blob'): Promise<Buffer | null> {
    const known = this.small.get(oid);
    if (known !== undefined) return known;
    return this.readPointerCandidate(oid, role);
  }

  /**
   * What pointerCandidate returns when this process already read the blob, else undefined:
   * without a promise, for loops over 500,000 tree entries that name a few thousand blobs.
   */
  knownPointerCandidate(oid: string): Buffer | null | undefined {
    return this.small.get(oid);
  }

  /** Whether the blob was found not to be a git-lfs pointer (noteNotPointer). */
  isKnownNotPointer(oid: string): boolean {
    return this.notPointers.has(oid);
  }

  /** Remembers that a blob does not parse as a git-lfs pointer (a fact of its immutable content). */
  noteNotPointer(oid: string): void {
    if (this.notPointers.size >= MAX_SMALL_BLOBS) this.notPointers.clear();
    this.notPointers.add(oid);
  }

  private async readPointerCandidate(oid: string, role: string): Promise<Buffer | null> {
    const data = await this.readBlob(oid, role);
    const kept = data.length <= POINTER_MAX_BYTES ? Buffer.from(data) : null;
    if (this.small.size >= MAX_SMALL_BLOBS) this.small.clear();
    this.small.set(oid, kept);
    return kept;
  }

  /** Forgets what this process proved by reading (pointerCandidate, GitObjects.intact): verify and fsck read everything again. */
  forgetReads(): void {
    this.small.clear();
    this.notPointers.clear();
    this.objects.forgetProven();
  }

  async readTreeEntries(oid: string, role = 'tree'): Promise<TreeEntry[]> {
    return this.parsed(oid, role, 'tree', parseTree);
  }

  /**
   * readTreeEntries for a walk over many versions: the tree last read at the same place
   * (`place`, a path) is handed to the parser, which reuses the entries of the bytes both share
   * (parseTreeFrom; the result is what parsing the object alone gives).
   */
  private async readTreeEntriesAt(oid: string, role: string, place: string): Promise<TreeEntry[]> {
    const content = (await this.readObjectAs(oid, role, 'tree')).content;
    const t = parseAs(oid, role, content, (c) => parseTreeFrom(c, this.lastTrees.get(place)));
    if (this.lastTrees.size >= MAX_LAST_TREES && !this.lastTrees.has(place)) this.lastTrees.clear();
    this.lastTrees.set(place, t);
    return t.entries;
  }

  /**
   * The blob at `filepath` in a commit's tree, reading only the trees on that path (other
   * entries, whatever their names, are not looked at); undefined if absent. `via` gets the id
   * of every object the answer depends on (the commit, the trees on the path, the blob).
   */
  async readFileAt(commit: string, filepath: string, via?: string[]): Promise<Uint8Array | undefined> {
    let oid = (await this.readCommit(commit)).tree;
    via?.push(commit, oid);
    const parts = filepath.split('/');
    for (let i = 0; i < parts.length; i++) {
      const where = parts.slice(0, i).join('/');
      const e = (await this.readTreeEntries(oid, where ? `tree ${where}` : 'root tree')).find((x) => x.name === parts[i]);
      const last = i === parts.length - 1;
      if (!e || e.type !== (last ? 'blob' : 'tree')) return undefined;
      oid = e.oid;
      via?.push(oid);
    }
    return this.readBlob(oid, filepath);
  }

  /** Writes the nested trees for a flat map; returns the root tree id. */
  async writeFlatTree(flat: FlatTree): Promise<string> {
    interface Dir {
      files: { name: string; mode: FileMode; oid: string }[];
      dirs: Map<string, Dir>;
    }
    const root: Dir = { files: [], dirs: new Map() };
    for (const [p, e] of flat) {
      const parts = p.split('/');
      let d = root;
      for (const part of parts.slice(0, -1)) {
        let sub = d.dirs.get(part);
        if (!sub) d.dirs.set(part, (sub = { files: [], dirs: new Map() }));
        d = sub;
      }
      d.files.push({ name: parts[parts.length - 1], mode: e.mode, oid: e.blob });
    }
    const write = async (d: Dir): Promise<string> => {
      const tree: TreeItem[] = [];
      for (const f of d.files) tree.push({ mode: f.mode, path: f.name, oid: f.oid });
      for (const [name, sub] of d.dirs) tree.push({ mode: '040000', path: name, oid: await write(sub) });
      return writeLooseObject(this.gitdir, 'tree', treeContent(tree));
    };
    return write(root);
  }

  /**
   * Walks a tree at any depth: `onFile(dir, entry)` for each blob entry (`dir` is its folder's
   * path with a trailing `/`, or ''), entries a version cannot hold (format/path-names.ts; such an
   * entry, and all below it, is skipped) pushed to `bad`. Gitlinks (another repository's commit)
   * are not files. Git's own writers never produce a name twice in one tree or a name that is
   * both a file and a directory; a hand-made tree can (git mktree accepts it): ECORRUPT.
   */
  private async walkTree(treeOid: string, onFile: (dir: string, e: TreeEntry) => void | Promise<void>, bad: BadEntry[]): Promise<void> {
    const problemOf = (dir: string, e: TreeEntry): string | null =>
      !e.utf8 ? 'a name that is not valid UTF-8' : dir === '' && e.name === '.mstore' && e.type === 'tree' ? null : nameProblem(e.name, { symlink: e.mode === '120000' });
    const walk = async (oid: string, dir: string): Promise<void> => {
      const entries = await this.readTreeEntriesAt(oid, dir ? `tree ${dir.slice(0, -1)}` : 'root tree', dir);
      const twice = duplicateName(entries, (e) => problemOf(dir, e) !== null);
      if (twice) {
        const p = dir + twice.name;
        throw new MstoreError('ECORRUPT', twice.kind === 'both' ? `tree ${treeOid} has both a file and a directory named ${p}` : `tree ${treeOid} names ${twice.kind === 'dir' ? 'directory ' : ''}${p} twice`, { what: treeOid });
      }
      for (const e of entries) {
        if (e.type === 'commit') continue;
        // The root's .mstore holds the version record; anywhere else the name is reserved.
        const problem = problemOf(dir, e);
        if (problem) bad.push({ path: dir + e.name, problem });
        else if (e.type === 'tree') await walk(e.oid, `${dir}${e.name}/`);
        else {
          const r = onFile(dir, e);
          if (r) await r;
        }
      }
    };
    await walk(treeOid, '');
  }

  /** Every file of a tree (blobs, at any depth) and the entries a version cannot hold (walkTree). */
  async readFlatTreeChecked(treeOid: string): Promise<{ flat: FlatTree; bad: BadEntry[] }> {
    const flat: FlatTree = new Map();
    const bad: BadEntry[] = [];
    await this.walkTree(treeOid, (dir, e) => void flat.set(dir + e.name, { mode: e.mode as FileMode, blob: e.oid }), bad);
    return { flat, bad };
  }

  /** Every file of a tree; a tree holding an entry a version cannot hold is ECORRUPT naming the entry. */
  async readFlatTree(treeOid: string): Promise<FlatTree> {
    const { flat, bad } = await this.readFlatTreeChecked(treeOid);
    if (bad.length) throw new MstoreError('ECORRUPT', `tree ${treeOid} holds ${badEntriesLine(bad)}`, { what: bad[0].path });
    return flat;
  }

  /**
   * The model files of a version's tree (not its `.mstore/` record), visited rather than
   * collected, for walks over a whole history (verify, push): a thousand versions of a
   * workspace that grows by a file a day are 500,000 entries, and a path string and a map
   * entry each cost more than the check the caller makes. `visit` may return a promise (then
   * awaited). Checked as readFlatTree checks, and ECORRUPT the same way, after the walk.
   */
  async forEachModelFile(treeOid: string, visit: (dir: string, e: TreeEntry) => void | Promise<void>): Promise<void> {
    const bad: BadEntry[] = [];
    await this.walkTree(treeOid, (dir, e) => (dir.startsWith('.mstore/') ? undefined : visit(dir, e)), bad);
    if (bad.length) throw new MstoreError('ECORRUPT', `tree ${treeOid} holds ${badEntriesLine(bad)}`, { what: bad[0].path });
  }

  async writeCommit(c: { message: string; tree: string; parents: string[]; author: Signature }): Promise<string> {
    return writeLooseObject(this.gitdir, 'commit', commitContent({ message: c.message, tree: c.tree, parents: c.parents, author: c.author }));
  }

  async readCommit(oid: string): Promise<ParsedCommit> {
    return this.parsed(oid, 'commit', 'commit', parseCommit);
  }

  async writeAnnotatedTag(t: { name: string; object: string; message: string; tagger: Signature }): Promise<string> {
    return writeLooseObject(this.gitdir, 'tag', tagContent({ object: t.object, type: 'commit', tag: t.name, tagger: t.tagger, message: t.message }));
  }

  /** An object's type and its content (without git's `<type> <len>\0` header); git re-hashes it on read. */
  async readRawObject(oid: string): Promise<{ type: string; content: Uint8Array }> {
    return this.readObjectAs(oid, 'object');
  }

  async readObjectType(oid: string): Promise<string> {
    return (await this.readObjectAs(oid, 'object')).type;
  }

  /** Follows annotated tags down to a commit id. */
  async peelToCommit(oid: string): Promise<string> {
    for (let i = 0; i < 16; i++) {
      // A commit the record cache knows, still intact, is not read and parsed again here (a
      // caller that needs its content reads it; tags are read, so verify re-hashes them).
      if (this.records.hasCommit(oid) && this.objects.intact(oid)) return oid;
      const o = await this.readObjectAs(oid, i ? 'tagged object' : 'object');
      if (o.type === 'commit') return oid;
      if (o.type !== 'tag') throw new Error(`${oid} is a ${o.type}, not a commit`);
      oid = parseAs(oid, 'tag', o.content, parseTag).object;
    }
    throw new Error(`tag chain at ${oid} is too long`);
  }

  /**
   * Like peelToCommit, but a tag whose `type` header says commit is taken at its word: the
   * commit itself is not read, so a version whose commit object is damaged keeps its name.
   */
  private async peelByHeaders(oid: string): Promise<string> {
    for (let i = 0; i < 16; i++) {
      if (this.records.hasCommit(oid) && this.objects.intact(oid)) return oid;
      const cached = this.cachedTag(oid);
      if (cached) {
        if (cached.type === 'commit') return cached.object;
        oid = cached.object;
        continue;
      }
      const o = await this.readObjectAs(oid, 'object');
      if (o.type === 'commit') return oid;
      if (o.type !== 'tag') throw new Error(`${oid} is a ${o.type}, not a commit`);
      const t = parseAs(oid, 'tag', o.content, parseTag);
      if (t.type === 'commit') return t.object;
      oid = t.object;
    }
    throw new Error(`tag chain at ${oid} is too long`);
  }

  /**
   * The cached record of a commit (record-cache.ts), if every object it was derived from is
   * still present and undamaged (GitObjects.intact); else undefined, and the caller reads git.
   */
  cachedCommit(oid: string): CommitRecord | undefined {
    const r = this.records.commit(oid);
    return r && Array.isArray(r.sources) && r.sources.every((s) => this.objects.intact(s)) ? r : undefined;
  }

  /** The cached headers of an annotated tag, if the tag object is still intact. */
  cachedTag(oid: string): TagRecord | undefined {
    const r = this.records.tag(oid);
    return r && this.objects.intact(oid) ? r : undefined;
  }

  /** The commit a tag leads to by its headers (peelByHeaders); undefined when it leads to none or cannot be read. */
  async peelTag(oid: string): Promise<string | undefined> {
    return this.peelByHeaders(oid).catch(() => undefined);
  }

  /** The object an annotated tag points at; undefined when `oid` is not a tag. */
  async readTagTarget(oid: string): Promise<string | undefined> {
    const o = await this.readObjectAs(oid, 'object');
    return o.type === 'tag' ? parseAs(oid, 'tag', o.content, parseTag).object : undefined;
  }

  async readTagMessage(oid: string): Promise<{ tag: string; message: string } | undefined> {
    const cached = this.cachedTag(oid);
    if (cached) return { tag: cached.tag, message: cached.message };
    const o = await this.readObjectAs(oid, 'object');
    if (o.type !== 'tag') return undefined;
    const t = parseAs(oid, 'tag', o.content, parseTag);
    return { tag: t.tag, message: t.message };
  }

  /**
   * The value of the ref with exactly this full name, or undefined. Never guesses: unlike git's
   * rev-parse (and isomorphic-git's resolveRef) it does not also try refs/<name>,
   * refs/tags/<name>, refs/heads/<name>, so no ref can answer for another. A loose ref file
   * first, then packed-refs; a symbolic ref (`ref: …`) is followed by its exact name. Does not
   * follow tags.
   */
  async readRef(ref: string, depth = 5): Promise<string | undefined> {
    return this.readRefSync(ref, depth);
  }

  /** readRef without a promise: refs are small files, read many at a time (peeledTags). */
  private readRefSync(ref: string, depth = 5, packed?: Map<string, string>): string | undefined {
    let text: string | undefined;
    try {
      text = readFileSync(path.join(this.gitdir, ref), 'utf8').trim();
    } catch {
      text = (packed ?? this.packedRefs()).get(ref);
    }
    if (text === undefined) return undefined;
    if (text.startsWith('ref: ')) return depth > 0 ? this.readRefSync(text.slice(5).trim(), depth - 1, packed) : undefined;
    return /^[0-9a-f]{40}$/.test(text) ? text : undefined;
  }

  /** packed-refs (written by `git pack-refs`, never by mstore): name -> value. */
  private packedRefs(): Map<string, string> {
    const out = new Map<string, string>();
    let text = '';
    try {
      text = readFileSync(path.join(this.gitdir, 'packed-refs'), 'utf8');
    } catch {
      return out;
    }
    for (const line of text.split('\n')) {
      const m = /^([0-9a-f]{40}) (\S+)$/.exec(line);
      if (m) out.set(m[2], m[1]);
    }
    return out;
  }

  /**
   * Writes a ref (its name already passed ref-names.ts). An empty folder left where the ref
   * file goes (its refs were deleted by another git) is removed first; a folder with refs in it
   * stays and the write fails (moveRefs refuses such a name before anything moves).
   */
  async writeRef(ref: string, value: string, force = true): Promise<void> {
    try {
      await (await isoGit()).writeRef({ ...this.base, ref, value, force });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EISDIR') throw e;
      await rmdir(path.join(this.gitdir, ref));
      await (await isoGit()).writeRef({ ...this.base, ref, value, force });
    }
  }

  /** Deletes a ref, then the folders of refs it leaves empty (up to refs/<namespace>/). */
  async deleteRef(ref: string): Promise<void> {
    await (await isoGit()).deleteRef({ ...this.base, ref });
    const parts = ref.split('/');
    for (let i = parts.length - 1; i > 2; i--) {
      const removed = await rmdir(path.join(this.gitdir, ...parts.slice(0, i))).then(
        () => true,
        () => false,
      );
      if (!removed) break;
    }
  }

  /**
   * Every tag that leads to a commit, sorted by name: its name, its own object and the commit.
   * `unproven`: a tag the ref table has peeled is taken without proving its object intact
   * (GitObjects.intact); the caller proves the ones it shows (log: a page of 20 of 1,000).
   */
  async peeledTags(opts: { unproven?: boolean } = {}): Promise<{ name: string; oid: string; commit: string }[]> {
    const out: { name: string; oid: string; commit: string }[] = [];
    const table = this.refTable.read();
    const names = [...table.refs.keys()].filter((r) => r.startsWith('refs/tags/')).sort();
    for (const ref of names) {
      const raw = table.refs.get(ref)!;
      const oid = raw.startsWith('ref: ') ? this.readRefSync(ref) : /^[0-9a-f]{40}$/.test(raw) ? raw : undefined;
      if (!oid) continue;
      const name = ref.slice('refs/tags/'.length);
      const peeled = table.peeled.get(ref);
      if (peeled && (opts.unproven || this.objects.intact(oid))) {
        out.push({ name, oid, commit: peeled });
        continue;
      }
      try {
        out.push({ name, oid, commit: await this.peelByHeaders(oid) });
      } catch {
        // a tag of a tree or blob (not a version name), or a damaged tag object
      }
    }
    return out;
  }

  /** Ref names under a prefix such as 'refs/tags', relative to it: loose ref files and packed-refs. */
  async listRefs(prefix: string): Promise<string[]> {
    const base = `${prefix.replace(/\/+$/, '')}/`;
    return [...this.refTable.read().refs.keys()].filter((r) => r.startsWith(base)).map((r) => r.slice(base.length));
  }

  /**
   * Every ref under `refs/` with its value as readRef gives it (undefined: unreadable), from
   * the ref table (ref-table.ts: one snapshot while it is provably current, else the files).
   */
  refValues(): Map<string, string | undefined> {
    const out = new Map<string, string | undefined>();
    for (const [ref, raw] of this.refTable.read().refs) {
      out.set(ref, /^[0-9a-f]{40}$/.test(raw) ? raw : raw.startsWith('ref: ') ? this.readRefSync(ref) : undefined);
    }
    return out;
  }

  /**
   * The object id a hex prefix names; undefined when none. A prefix of several ids throws
   * EUNKNOWNREV saying it is ambiguous and listing the candidates (type and id), as git does.
   */
  async expandOid(short: string): Promise<string | undefined> {
    try {
      return await (await isoGit()).expandOid({ ...this.base, oid: short, cache: this.isoCache });
    } catch (e) {
      const matches = (e as { code?: string; data?: { matches?: string[] } }).code === 'AmbiguousError' ? (e as { data: { matches?: string[] } }).data.matches : undefined;
      if (!matches?.length) return undefined;
      const listed: string[] = [];
      for (const oid of [...matches].sort().slice(0, 10)) listed.push(`${await this.readObjectType(oid).catch(() => 'object')} ${oid}`);
      const more = matches.length > 10 ? ` and ${matches.length - 10} more` : '';
      throw new MstoreError('EUNKNOWNREV', `'${short}' is ambiguous: ${matches.length} objects start with it (${listed.join(', ')}${more}); give more digits`, { what: short });
    }
  }
}
