/**
 * Versions: lines, numbering, the metadata record and revision syntax.
 *
 * A line is a branch. The default line `main` lives at refs/heads/latest, line X at
 * refs/heads/X/latest, so `latest` and `X/latest` work in mstore and in real git.
 * Version n of the default line is the annotated tag refs/tags/v00n, of line X
 * refs/tags/X/v00n. Each version's tree holds the model directory plus the metadata
 * record at `.mstore/version.json`.
 */
import { MstoreError } from '../lib/errors.js';
import { forVersion, type GitRepo } from './git.js';
import { parseCommit, parseTag, type ParsedCommit } from '../format/git-links.js';
import type { CommitRecord, TagRecord } from './record-cache.js';
import { namePartsProblem, refNameProblem, shown } from './ref-names.js';

export const DEFAULT_LINE = 'main';
export const META_PATH = '.mstore/version.json';
export const META_SCHEMA = 'mstore.version/1';
export const STATUSES = ['draft', 'pending', 'training', 'completed', 'failed'] as const;

export interface VersionMeta {
  schema: typeof META_SCHEMA;
  version: string;
  line: string;
  number: number;
  description: string;
  created: string;
  author: { name: string; email: string };
  host: string;
  params: Record<string, unknown>;
  metrics: Record<string, unknown>;
  training_data: string[];
  status: string | null;
  lineage: { parents: string[]; parent_versions: string[] };
  meta: Record<string, unknown>;
  files: { count: number; bytes: number };
}

const COMPONENT = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;
const VERSION_COMPONENT = /^v[0-9]+$/;

/**
 * Why a tag or line name is not allowed: first the ref-name rule (ref-names.ts: git's
 * check-ref-format and the 255-byte part limit, with its own reason), then mstore's narrower
 * alphabet; undefined when it passes both.
 */
function shortNameProblem(name: string): string | undefined {
  const rule = namePartsProblem(name);
  if (rule) return rule;
  const part = name.split('/').find((c) => !COMPONENT.test(c));
  if (part !== undefined) return `'${shown(part)}': a part is letters, digits, '.', '_' and '-', not starting with '.' or '-'`;
  return undefined;
}

export function checkLineName(line: string): void {
  const why = shortNameProblem(line);
  if (why) throw new MstoreError('EBADNAME', `invalid line name '${shown(line)}': ${why}`, { what: line });
  if (line.split('/').some((c) => c === 'latest' || VERSION_COMPONENT.test(c))) {
    throw new MstoreError('EBADNAME', `invalid line name '${shown(line)}': 'latest' and vNNN parts are reserved (line heads and versions)`, { what: line });
  }
}

/** User tag names: anything the ref rule accepts that cannot collide with version tags or `latest`. */
export function checkTagName(name: string): void {
  const why = shortNameProblem(name) ?? refNameProblem(`refs/tags/${name}`);
  if (why) throw new MstoreError('EBADNAME', `invalid tag name '${shown(name)}': ${why}`, { what: name });
  const parts = name.split('/');
  if (VERSION_COMPONENT.test(parts[parts.length - 1]) || parts[parts.length - 1] === 'latest') {
    throw new MstoreError('EBADNAME', `invalid tag name '${shown(name)}' (vNNN and 'latest' are reserved for versions)`, { what: name });
  }
}

/**
 * git cannot hold both refs/tags/a and refs/tags/a/b (a file and a directory of one name):
 * names whose ref would collide with an existing one are refused before anything is written.
 */
export async function refCollision(repo: GitRepo, ref: string): Promise<string | undefined> {
  const parts = ref.split('/');
  for (let i = 3; i < parts.length; i++) {
    const prefix = parts.slice(0, i).join('/');
    if (await repo.readRef(prefix)) return prefix;
  }
  const below = await repo.listRefs(ref);
  return below.length ? `${ref}/${below[0]}` : undefined;
}

export function lineRef(line: string): string {
  return line === DEFAULT_LINE ? 'refs/heads/latest' : `refs/heads/${line}/latest`;
}

export function versionName(line: string, n: number): string {
  const v = `v${String(n).padStart(3, '0')}`;
  return line === DEFAULT_LINE ? v : `${line}/${v}`;
}

/**
 * The number the next version of a line gets: one more than the highest used by a version
 * tag now or ever recorded in the ref history (a removed version's number is never reused).
 */
export async function nextVersionNumber(repo: GitRepo, line: string, history: { ref: string }[]): Promise<number> {
  const prefix = line === DEFAULT_LINE ? 'refs/tags/' : `refs/tags/${line}/`;
  let max = await lastVersionNumber(repo, line);
  for (const e of history) {
    if (!e.ref.startsWith(prefix)) continue;
    const m = /^v([0-9]+)$/.exec(e.ref.slice(prefix.length));
    if (m) max = Math.max(max, Number(m[1]));
  }
  return max + 1;
}

/** The highest version number used on a line (0 when none). */
export async function lastVersionNumber(repo: GitRepo, line: string): Promise<number> {
  const prefix = line === DEFAULT_LINE ? 'refs/tags' : `refs/tags/${line}`;
  let max = 0;
  for (const name of await repo.listRefs(prefix)) {
    const m = /^v([0-9]+)$/.exec(name);
    if (m) max = Math.max(max, Number(m[1]));
  }
  return max;
}

/** A version name of a commit, from the version tags (read on error paths only: it peels every tag). */
export async function versionNameOf(repo: GitRepo, commit: string): Promise<string> {
  for (const t of await repo.peeledTags()) if (t.commit === commit && /(^|\/)v[0-9]+$/.test(t.name)) return t.name;
  return `version record ${commit.slice(0, 12)}`;
}

/** Runs `fn`; a damaged or missing object it meets is named with the version of `commit`. */
export async function inVersionOf<T>(repo: GitRepo, commit: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw e instanceof MstoreError && (e.code === 'ECORRUPT' || e.code === 'EMISSING') && e.where === undefined ? forVersion(await versionNameOf(repo, commit), e) : e;
  }
}

/**
 * A version record for listing: the parsed commit and its metadata, from the record cache
 * (record-cache.ts) when it has them, else read from git (and not cached: readers never write).
 */
export async function readRecord(repo: GitRepo, commit: string): Promise<{ commit: ParsedCommit; meta: VersionMeta | undefined }> {
  const cached = repo.cachedCommit(commit);
  if (cached) return { commit: cached.commit, meta: (cached.meta ?? undefined) as VersionMeta | undefined };
  return { commit: await inVersionOf(repo, commit, () => repo.readCommit(commit)), meta: await readMeta(repo, commit) };
}

/**
 * Puts the records that refs now name into the record cache: each annotated tag, each commit
 * and its ancestors up to the first one already cached. Called by writers after refs moved;
 * a record that cannot be read is left out (readers then meet it in git, and report it).
 */
export async function learnRecords(repo: GitRepo, oids: Iterable<string>): Promise<void> {
  await deriveRecords(repo, oids, (oid, kind) => (kind === 'c' ? repo.records.hasCommit(oid) : repo.records.hasTag(oid)), {
    commit: (oid, r) => repo.records.putCommit(oid, r),
    tag: (oid, r) => repo.records.putTag(oid, r),
  });
  repo.records.flush();
}

/**
 * Derives records from git for `oids` and what they lead to (a tag's target, a commit's
 * parents), skipping and not following what `known` says is done. Damaged or missing objects
 * are left out.
 */
async function deriveRecords(
  repo: GitRepo,
  oids: Iterable<string>,
  known: (oid: string, kind: 'c' | 't') => boolean,
  put: { commit: (oid: string, r: CommitRecord) => void; tag: (oid: string, r: TagRecord) => void },
): Promise<void> {
  const todo = [...oids];
  const seen = new Set<string>();
  while (todo.length) {
    const oid = todo.pop()!;
    if (seen.has(oid)) continue;
    seen.add(oid);
    try {
      const o = await repo.readRawObject(oid);
      if (o.type === 'tag') {
        const t = parseTag(Buffer.from(o.content));
        if (!known(oid, 't')) put.tag(oid, { object: t.object, type: t.type, tag: t.tag, message: t.message });
        todo.push(t.object);
      } else if (o.type === 'commit' && !known(oid, 'c')) {
        put.commit(oid, await deriveCommit(repo, oid, Buffer.from(o.content)));
        todo.push(...parseCommit(Buffer.from(o.content)).parent);
      }
    } catch {
      // damaged or missing: not cached
    }
  }
}

async function deriveCommit(repo: GitRepo, oid: string, content: Buffer): Promise<CommitRecord> {
  const sources: string[] = [];
  const meta = (await readMeta(repo, oid, sources)) ?? null;
  return { commit: parseCommit(content), meta, sources: [...new Set(sources)] };
}

/** The record cache made again from git: every tag and commit the refs lead to (fsck --repair-index). */
export async function rebuildRecords(repo: GitRepo, refValues: Iterable<string>): Promise<void> {
  const commits = new Map<string, CommitRecord>();
  const tags = new Map<string, TagRecord>();
  await deriveRecords(repo, refValues, (oid, kind) => (kind === 'c' ? commits.has(oid) : tags.has(oid)), {
    commit: (oid, r) => commits.set(oid, r),
    tag: (oid, r) => tags.set(oid, r),
  });
  repo.records.rebuild(commits, tags);
}

/** Entries of the record cache that disagree with the objects they name (those present), for fsck. */
export async function staleRecords(repo: GitRepo): Promise<string[]> {
  const wrong: string[] = [];
  for (const e of repo.records.entries()) {
    if (!repo.objects.has(e.oid)) continue;
    let truth: unknown;
    try {
      const o = await repo.readRawObject(e.oid);
      if (e.kind === 't') {
        const t = parseTag(Buffer.from(o.content));
        truth = o.type === 'tag' ? { object: t.object, type: t.type, tag: t.tag, message: t.message } : undefined;
      } else truth = o.type === 'commit' ? await deriveCommit(repo, e.oid, Buffer.from(o.content)) : undefined;
    } catch {
      continue; // a damaged object is reported as such
    }
    if (JSON.stringify(truth) !== e.json) wrong.push(`${e.kind === 't' ? 'tag' : 'commit'} ${e.oid}`);
  }
  return wrong;
}

export async function readMeta(repo: GitRepo, commit: string, via?: string[]): Promise<VersionMeta | undefined> {
  return inVersionOf(repo, commit, async () => {
    const blob = await repo.readFileAt(commit, META_PATH, via);
    if (!blob) return undefined;
    const text = Buffer.from(blob).toString('utf8');
    try {
      return JSON.parse(text) as VersionMeta;
    } catch {
      throw new MstoreError('ECORRUPT', `${META_PATH} of commit ${commit} is not valid JSON`, { what: commit });
    }
  });
}

/**
 * Resolves a revision to a commit id: `v003`, `line/v003`, any tag, `latest`,
 * `line/latest`, a full or >= 7-hex commit id, each optionally followed by `~N` / `^N`.
 */
export async function resolveRev(repo: GitRepo, rev: string): Promise<string> {
  const m = /^(.+?)((?:[~^][0-9]*)*)$/.exec(rev);
  if (!m || rev.includes('..') || rev.startsWith('-')) throw new MstoreError('EUNKNOWNREV', `unknown revision '${rev}'`, { what: rev });
  const [, base, suffix] = m;
  let oid: string | undefined;
  // A full name is read as itself; a short one as a tag, else a head (never refs/<name>).
  const candidates = base.startsWith('refs/')
    ? [base]
    : base === 'latest'
      ? ['refs/heads/latest']
      : base.endsWith('/latest')
        ? [`refs/heads/${base}`]
        : [`refs/tags/${base}`, `refs/heads/${base}`];
  for (const ref of candidates) {
    oid = await repo.readRef(ref);
    if (oid) break;
  }
  if (!oid && /^[0-9a-f]{7,40}$/.test(base)) oid = await repo.expandOid(base);
  if (!oid) throw new MstoreError('EUNKNOWNREV', `unknown revision '${rev}'`, { what: base });
  let commit: string;
  try {
    commit = await repo.peelToCommit(oid);
  } catch (e) {
    if (e instanceof MstoreError) throw forVersion(rev, e);
    throw new MstoreError('EUNKNOWNREV', `revision '${rev}' does not name a version (${(e as Error).message})`, { what: rev });
  }
  for (const step of suffix.match(/[~^][0-9]*/g) ?? []) {
    const n = step.length > 1 ? Number(step.slice(1)) : 1;
    if (step[0] === '~') {
      for (let i = 0; i < n; i++) {
        const parents = (await inVersionOf(repo, commit, () => repo.readCommit(commit))).parent;
        if (!parents.length) throw new MstoreError('EUNKNOWNREV', `revision '${rev}' goes past the first version`, { what: rev });
        commit = parents[0];
      }
    } else if (n > 0) {
      const parents = (await inVersionOf(repo, commit, () => repo.readCommit(commit))).parent;
      if (parents.length < n) throw new MstoreError('EUNKNOWNREV', `revision '${rev}': no parent ${n}`, { what: rev });
      commit = parents[n - 1];
    }
  }
  return commit;
}
