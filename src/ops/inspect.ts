/**
 * Read-only views of versions: `log` and `show`. A damaged version record does not hide the
 * others: log lists every version it can read and returns one problem line per one it cannot
 * (naming the object and the version); show lists every file it can and names the entries the
 * version cannot hold (docs/format.md §7.9).
 */
import type { Store } from '../repo/store.js';
import { MstoreError, errorLine } from '../lib/errors.js';
import { resolveRev, readMeta, type VersionMeta } from '../repo/versions.js';
import { badEntriesError, listVersionFilesChecked, type VersionFile } from '../repo/version-files.js';
import type { GitRepo } from '../repo/git.js';
import type { ParsedCommit } from '../format/git-links.js';
import { allLabels, readLabels, type Labels } from './labels.js';

export interface LogEntry {
  version: string | undefined;
  commit: string;
  date: string;
  description: string;
  bytes: number | undefined;
  metrics: Record<string, unknown>;
  /** The `status` label when set (mstore label), else the status given at commit. */
  status: string | null;
  tags: string[];
  labels: Labels;
  meta: VersionMeta | undefined;
}

/** Map commit id -> tag names that point at it (annotated or not). */
export async function tagsByCommit(repo: GitRepo): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const { name, commit } of await repo.peeledTags()) out.set(commit, [...(out.get(commit) ?? []), name]);
  return out;
}

export interface LogResult {
  entries: LogEntry[];
  /** One line per version whose record could not be read (damaged or missing object), naming both. */
  problems: string[];
}

/** A damaged record's error is reported and the walk goes on; any other error stops it. */
function recordProblem(e: unknown): string {
  if (e instanceof MstoreError && (e.code === 'ECORRUPT' || e.code === 'EMISSING')) return errorLine(e);
  throw e;
}

/** `v003` -> ['', 3], `L/v003` -> ['L', 3]; undefined for a name that is not a version's. */
function versionParts(name: string): [string, number] | undefined {
  const m = /^(?:(.+)\/)?v([0-9]+)$/.exec(name);
  return m ? [m[1] ?? '', Number(m[2])] : undefined;
}

/**
 * Newest first along first parents from `rev` (default `latest`), skipping removed versions.
 * A version whose record cannot be read is left out with a problem line; past a commit that
 * cannot be read (its parents unknown), the walk goes on at the next older version tag of
 * the same line.
 */
export async function log(store: Store, opts: { rev?: string; limit?: number; status?: string } = {}): Promise<LogResult> {
  const repo = store.repo;
  const out: LogEntry[] = [];
  const problems: string[] = [];
  // An empty store has no history, which is not an error.
  if (!opts.rev && !(await repo.readRef('refs/heads/latest'))) return { entries: out, problems };
  // The tags of every version, their objects proven intact only for the versions listed.
  const peeled = await repo.peeledTags({ unproven: true });
  const tagObject = new Map(peeled.map((t) => [t.name, t.oid]));
  const tags = new Map<string, string[]>();
  for (const { name, commit } of peeled) tags.set(commit, [...(tags.get(commit) ?? []), name]);
  const soundTags = (oid: string): string[] => (tags.get(oid) ?? []).filter((t) => repo.objects.intact(tagObject.get(t)!));
  const labels = await allLabels(store);
  const versionOf = (oid: string): string | undefined => (tags.get(oid) ?? []).find((t) => versionParts(t));
  const seen = new Set<string>();
  /** The next older version of the line of `name` whose commit was not listed yet. */
  const olderThan = (name: string): string | undefined => {
    const [line, n] = versionParts(name)!;
    let best: [number, string] | undefined;
    for (const [commit, names] of tags) {
      if (seen.has(commit)) continue;
      for (const t of names) {
        const p = versionParts(t);
        if (p && p[0] === line && p[1] < n && (!best || p[1] > best[0])) best = [p[1], commit];
      }
    }
    return best?.[1];
  };
  let oid: string | undefined = await resolveRev(repo, opts.rev ?? 'latest');
  while (oid && !seen.has(oid) && (opts.limit === undefined || out.length < opts.limit)) {
    seen.add(oid);
    const cached = repo.cachedCommit(oid);
    let c: ParsedCommit;
    try {
      c = cached ? cached.commit : await repo.readCommit(oid);
    } catch (e) {
      const name = versionOf(oid);
      problems.push(`${name ?? `commit ${oid.slice(0, 12)}`}: ${recordProblem(e)}`);
      oid = name ? olderThan(name) : undefined;
      continue;
    }
    let meta: VersionMeta | undefined;
    try {
      meta = cached ? ((cached.meta ?? undefined) as VersionMeta | undefined) : await readMeta(repo, oid);
    } catch (e) {
      const line = recordProblem(e);
      // A removed version (no version tag) is not listed, readable or not.
      if (versionOf(oid)) problems.push(line);
      oid = c.parent[0];
      continue;
    }
    // A removed version (rm/prune) stays in the parent chain but is no longer listed.
    const here = soundTags(oid);
    if (meta?.version && !here.includes(meta.version)) {
      oid = c.parent[0];
      continue;
    }
    const l = labels.get(oid) ?? {};
    const status = l.status ?? meta?.status ?? null;
    if (opts.status === undefined || status === opts.status) {
      out.push({
        version: meta?.version,
        commit: oid,
        date: meta?.created ?? new Date(c.committer.timestamp * 1000).toISOString(),
        description: meta?.description ?? c.message.trim(),
        bytes: meta?.files.bytes,
        metrics: meta?.metrics ?? {},
        status,
        tags: here.filter((t) => t !== meta?.version).sort(),
        labels: l,
        meta,
      });
    }
    oid = c.parent[0];
  }
  return { entries: out, problems };
}

export interface ShowResult {
  version: string | undefined;
  commit: string;
  tags: string[];
  /** The `status` label when set, else the status given at commit. */
  status: string | null;
  labels: Labels;
  meta: VersionMeta | undefined;
  /** Every file the version's tree holds under a name a version can hold. */
  files: VersionFile[];
  /** One line naming the version's entries it cannot hold (not in `files`); empty when none. */
  problems: string[];
}

export async function show(store: Store, rev: string): Promise<ShowResult> {
  const repo = store.repo;
  const commit = await resolveRev(repo, rev);
  const meta = await readMeta(repo, commit);
  const tags = ((await tagsByCommit(repo)).get(commit) ?? []).filter((t) => t !== meta?.version).sort();
  const labels = await readLabels(store, commit);
  const { files, bad } = await listVersionFilesChecked(repo, commit);
  const problems = bad.length ? [errorLine(await badEntriesError(repo, commit, bad))] : [];
  return { version: meta?.version, commit, tags, status: labels.status ?? meta?.status ?? null, labels, meta, files, problems };
}
