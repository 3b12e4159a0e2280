/**
 * What the store must keep: the versions that refs point at (live) and those that ref
 * history entries younger than a grace period point at (restorable), and the content
 * (lfs file oids) each of those versions needs. A commit's parent links record lineage
 * but do not keep a removed ancestor's content alive (like git-lfs prune: the pointers
 * stay in history, the objects go).
 */
import type { Store } from './store.js';
import type { GitRepo } from './git.js';
import { readRefLog, type RefLogEntry } from './reflog.js';
import { parsePointer } from '../format/pointer.js';

/** commit id -> the names (refs, or history entries) that reach it. */
export type Roots = Map<string, string[]>;

function addRoot(roots: Roots, commit: string, name: string): void {
  const names = roots.get(commit);
  if (names) names.push(name);
  else roots.set(commit, [name]);
}

/**
 * Every ref that names versions (full names, sorted): line heads, version and user tags,
 * anything else under refs/ except notes (labels annotate versions; they are not versions).
 */
export async function allRefs(repo: GitRepo): Promise<string[]> {
  return [...repo.refValues().keys()].filter((r) => !r.startsWith('refs/notes/')).sort();
}

export interface RootProblem {
  ref: string;
  /** The object the chain broke at (the damaged commit, or the ref's own value). */
  oid?: string;
  message: string;
}

/** The commits refs point at (tags peeled). Refs that lead nowhere are returned as problems. */
export async function refRoots(repo: GitRepo): Promise<{ roots: Roots; problems: RootProblem[] }> {
  const roots: Roots = new Map();
  const problems: RootProblem[] = [];
  const values = repo.refValues();
  for (const ref of [...values.keys()].filter((r) => !r.startsWith('refs/notes/')).sort()) {
    const oid = values.get(ref);
    if (!oid) {
      problems.push({ ref, message: `${ref} cannot be read` });
      continue;
    }
    try {
      addRoot(roots, await repo.peelToCommit(oid), ref);
    } catch (e) {
      // Name the object that broke the chain: the tag's target when the tag itself reads.
      const target = await repo.readTagTarget(oid).catch(() => undefined);
      const broken = target ?? oid;
      problems.push({ ref, oid: broken, message: `${ref} -> ${broken}: ${(e as Error).message.split('\n')[0]}` });
    }
  }
  return { roots, problems };
}

/** Commits named by ref history entries at or after `since` (old and new values), peeled. */
export async function historyRoots(store: Store, since: Date, entries?: RefLogEntry[]): Promise<Roots> {
  const roots: Roots = new Map();
  const repo = store.repo;
  for (const e of entries ?? (await readRefLog(store))) {
    if (new Date(e.time).getTime() < since.getTime()) continue;
    for (const v of [e.old, e.new]) {
      if (!v) continue;
      try {
        addRoot(roots, await repo.peelToCommit(v), `${e.ref}@${e.time}`);
      } catch {
        // an object gc never deletes but that cannot be read: fsck reports it
      }
    }
  }
  return roots;
}

export function mergeRoots(a: Roots, b: Roots): Roots {
  const out: Roots = new Map(a);
  for (const [c, names] of b) out.set(c, [...(out.get(c) ?? []), ...names]);
  return out;
}

export interface ContentUse {
  oid: string;
  size: number;
  /** "version:path" for each use, for messages. */
  uses: string[];
}

/** The lfs content each commit's tree points at, by oid. */
export async function contentOf(repo: GitRepo, commits: Iterable<string>, label: (commit: string) => string): Promise<Map<string, ContentUse>> {
  const out = new Map<string, ContentUse>();
  const note = (use: string, small: Buffer | null, blob: string): void => {
    const ptr = small && parsePointer(small, use);
    if (!ptr) {
      repo.noteNotPointer(blob);
      return;
    }
    const cur = out.get(ptr.oid);
    if (cur) cur.uses.push(use);
    else out.set(ptr.oid, { oid: ptr.oid, size: ptr.size, uses: [use] });
  };
  for (const commit of commits) {
    const c = await repo.readCommit(commit);
    await repo.forEachModelFile(c.tree, (dir, e) => {
      if (e.mode === '120000' || repo.isKnownNotPointer(e.oid)) return;
      const use = `${label(commit)}:${dir}${e.name}`;
      const small = repo.knownPointerCandidate(e.oid);
      if (small !== undefined) return note(use, small, e.oid);
      return repo.pointerCandidate(e.oid, use).then((read) => note(use, read, e.oid));
    });
  }
  return out;
}
