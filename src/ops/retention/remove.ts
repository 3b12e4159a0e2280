/**
 * Removing versions (`rm`, and `prune` through it) and bringing them back (`restore`).
 * Removal deletes names only: the version tag, user tags on it, and moves a line head that
 * pointed at it back to the nearest surviving version. Every move is in the ref history,
 * and the content stays until gc finds it unreachable and older than the grace period.
 * Before anything moves, the versions are backed up and verified (unless told not to).
 */
import { MstoreError } from '../../lib/errors.js';
import type { Store } from '../../repo/store.js';
import { readMeta, resolveRev } from '../../repo/versions.js';
import { refRoots, type Roots } from '../../repo/reach.js';
import { moveRefs, readRefLog, entriesFor, newOpId, type RefMove, type RefLogEntry } from '../../repo/reflog.js';
import { backupLocked, type BackupRecord } from '../copy/backups.js';
import { verify } from '../integrity/verify.js';

export interface RemovalPlan {
  versions: { name: string; commit: string; line: string }[];
  moves: RefMove[];
}

/** What removing these revisions would do. Each must be a version (its version tag exists). */
export async function planRemoval(store: Store, revs: string[]): Promise<RemovalPlan> {
  const repo = store.repo;
  const { roots } = await refRoots(repo);
  const versions: RemovalPlan['versions'] = [];
  const gone = new Set<string>();
  for (const rev of revs) {
    const commit = await resolveRev(repo, rev);
    const meta = await readMeta(repo, commit);
    const tag = meta?.version ? await repo.readRef(`refs/tags/${meta.version}`) : undefined;
    if (!meta?.version || !tag || (await repo.peelToCommit(tag)) !== commit) {
      throw new MstoreError('EUNKNOWNREV', `'${rev}' is not a version of this store (already removed?)`, { what: rev });
    }
    if (gone.has(commit)) continue;
    gone.add(commit);
    versions.push({ name: meta.version, commit, line: meta.line });
  }
  const moves: RefMove[] = [];
  for (const v of versions) {
    for (const ref of roots.get(v.commit) ?? []) if (ref.startsWith('refs/tags/')) moves.push({ ref, value: null });
  }
  // A line head on a removed version goes back to the nearest version that stays.
  for (const [commit, refs] of roots) {
    if (!gone.has(commit)) continue;
    for (const ref of refs) {
      if (!ref.startsWith('refs/heads/')) continue;
      let c: string | undefined = commit;
      while (c && (gone.has(c) || !(await isLiveVersion(store, c)))) c = (await repo.readCommit(c)).parent[0];
      moves.push({ ref, value: c ?? null });
    }
  }
  return { versions, moves };
}

async function isLiveVersion(store: Store, commit: string): Promise<boolean> {
  const meta = await readMeta(store.repo, commit).catch(() => undefined);
  if (!meta?.version) return false;
  const tag = await store.repo.readRef(`refs/tags/${meta.version}`);
  return !!tag && (await store.repo.peelToCommit(tag).catch(() => '')) === commit;
}

export interface RemovalOptions {
  reason: 'rm' | 'prune';
  /** Skip the pre-deletion backup (loud in the CLI). */
  noBackup?: boolean;
  backupName?: string;
  message?: string;
}

export interface RemovalResult {
  plan: RemovalPlan;
  backup: BackupRecord | undefined;
  op: string;
  entries: RefLogEntry[];
}

/** Backs up (pre_deletion, verified), then moves the refs. Refuses without a backup store. */
export async function executeRemoval(store: Store, revs: string[], opts: RemovalOptions): Promise<RemovalResult> {
  return store.withLock(opts.reason, async () => removeLocked(store, await planRemoval(store, revs), opts));
}

/**
 * The removal of a plan made under the store lock. The plan must be made after the lock is
 * taken: taking over a killed writer's lock finishes its last operation (finishLastOperation),
 * so a plan made before may name versions that operation removed.
 */
export async function removeLocked(store: Store, plan: RemovalPlan, opts: RemovalOptions): Promise<RemovalResult> {
  let record: BackupRecord | undefined;
  if (!opts.noBackup && plan.versions.length) {
    const versions: Roots = new Map(plan.versions.map((v) => [v.commit, [v.name]]));
    try {
      record = await backupLocked(store, {
        name: opts.backupName,
        type: 'pre_deletion',
        reason: opts.message ?? `before ${opts.reason} of ${plan.versions.map((v) => v.name).join(', ')}`,
        versions,
      });
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw new MstoreError(
        (e as MstoreError).code ?? 'EMISSING',
        `${opts.reason} refused, nothing removed: the pre-deletion backup failed: ${why}` +
          (/no backup store is configured/.test(why) ? " (or pass --no-backup to delete without one)" : ''),
      );
    }
  }
  const op = newOpId();
  const entries = await moveRefs(store, plan.moves, opts.reason, { op, message: opts.message });
  return { plan, backup: record, op, entries };
}

export interface RestoreResult {
  ref: string;
  commit: string;
  version: string | undefined;
  entries: RefLogEntry[];
}

/**
 * Brings back a deleted ref from the ref history. For a version removed by rm/prune, the
 * user tags removed with it come back too, and a line head moved off it moves back if it
 * has not moved since. Refuses when the content is gone (gc after the grace period).
 */
export async function restoreRef(store: Store, name: string): Promise<RestoreResult> {
  return store.withLock('restore', async () => {
    const repo = store.repo;
    const log = await readRefLog(store);
    const deletion = entriesFor(log, name).find((e) => e.new === null && e.old);
    if (!deletion) throw new MstoreError('ENOTFOUND', `the ref history has no deletion of '${name}'`, { what: name, where: 'the ref history' });
    if (await repo.readRef(deletion.ref)) throw new MstoreError('EEXISTS', `${deletion.ref} exists; nothing to restore`);
    let commit: string;
    try {
      commit = await repo.peelToCommit(deletion.old!);
    } catch {
      throw new MstoreError('EMISSING', `${deletion.ref} pointed at ${deletion.old}, which is no longer in the store`);
    }
    const check = await verify(store, { commits: new Map([[commit, [name]]]), mode: 'quick' });
    if (!check.ok) {
      throw new MstoreError('EMISSING', `cannot restore ${name}: its content is gone (${check.problems[0].message}); restore it from a backup with 'mstore backup restore NAME ${name}'`);
    }
    const moves: RefMove[] = [{ ref: deletion.ref, value: deletion.old, expect: null }];
    for (const e of log) {
      if (e.op !== deletion.op || e === deletion || !e.old) continue;
      const peeled = await repo.peelToCommit(e.old).catch(() => undefined);
      if (peeled !== commit) continue;
      const cur = (await repo.readRef(e.ref)) ?? null;
      if (e.ref.startsWith('refs/tags/') && e.new === null && cur === null) moves.push({ ref: e.ref, value: e.old, expect: null });
      if (e.ref.startsWith('refs/heads/') && cur === e.new) moves.push({ ref: e.ref, value: e.old, expect: cur });
    }
    const meta = await readMeta(repo, commit);
    // The whole group or nothing: moveRefs checks every ref (a name now taken by a line, say)
    // before the history is written or any ref moves.
    let entries: RefLogEntry[];
    try {
      entries = await moveRefs(store, moves, 'restore', { message: `undo ${deletion.reason} of ${deletion.ref} at ${deletion.time}` });
    } catch (e) {
      if (!(e instanceof MstoreError)) throw e;
      throw new MstoreError(e.code, `cannot restore ${name}, nothing restored: ${e.message.replace(/; no ref moved$/, '')}`, { what: e.what ?? name });
    }
    return { ref: deletion.ref, commit, version: meta?.version, entries };
  });
}

