/** Read-only views of versions: `log` and `show`. */
import type { Store } from '../repo/store.js';
import { resolveRev, readMeta, type VersionMeta } from '../repo/versions.js';
import { listVersionFiles, type VersionFile } from '../repo/version-files.js';
import type { GitRepo } from '../repo/git.js';
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

/** Newest first along first parents from `rev` (default `latest`), skipping removed versions. */
export async function log(store: Store, opts: { rev?: string; limit?: number; status?: string } = {}): Promise<LogEntry[]> {
  const repo = store.repo;
  // An empty store has no history, which is not an error.
  if (!opts.rev && !(await repo.readRef('refs/heads/latest'))) return [];
  const tags = await tagsByCommit(repo);
  const labels = await allLabels(store);
  let oid: string | undefined = await resolveRev(repo, opts.rev ?? 'latest');
  const out: LogEntry[] = [];
  while (oid && (opts.limit === undefined || out.length < opts.limit)) {
    const c = await repo.readCommit(oid);
    const meta = await readMeta(repo, oid);
    // A removed version (rm/prune) stays in the parent chain but is no longer listed.
    if (meta?.version && !(tags.get(oid) ?? []).includes(meta.version)) {
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
        tags: (tags.get(oid) ?? []).filter((t) => t !== meta?.version).sort(),
        labels: l,
        meta,
      });
    }
    oid = c.parent[0];
  }
  return out;
}

export interface ShowResult {
  version: string | undefined;
  commit: string;
  tags: string[];
  /** The `status` label when set, else the status given at commit. */
  status: string | null;
  labels: Labels;
  meta: VersionMeta | undefined;
  files: VersionFile[];
}

export async function show(store: Store, rev: string): Promise<ShowResult> {
  const repo = store.repo;
  const commit = await resolveRev(repo, rev);
  const meta = await readMeta(repo, commit);
  const tags = ((await tagsByCommit(repo)).get(commit) ?? []).filter((t) => t !== meta?.version).sort();
  const labels = await readLabels(store, commit);
  return { version: meta?.version, commit, tags, status: labels.status ?? meta?.status ?? null, labels, meta, files: await listVersionFiles(repo, commit) };
}
