/**
 * Backup stores: other mstore stores (a second disk, an NFS mount) that versions are
 * copied to and verified in, with a record of every backup. Registered in `backups.json`;
 * records appended to the journal `backups.jsonl` (lib/journal.ts; docs/format.md §14).
 */
import { readFile, stat, readdir } from 'node:fs/promises';
import path from 'node:path';
import { MstoreError } from '../../lib/errors.js';
import { Store, STORE_DIR } from '../../repo/store.js';
import { atomicWriteFile } from '../../lib/fsutil.js';
import { appendRecords, readRecords } from '../../lib/journal.js';
import { now } from '../../lib/clock.js';
import { readMeta, resolveRev, lineRef } from '../../repo/versions.js';
import { refRoots, type Roots } from '../../repo/reach.js';
import { copyVersions, type CopyResult } from './transfer.js';
import { NOTES_REF } from '../labels.js';

export const BACKUP_TYPES = ['manual', 'pre_consolidation', 'pre_deletion', 'emergency'] as const;
export type BackupType = (typeof BACKUP_TYPES)[number];

export interface BackupRegistry {
  stores: Record<string, { path: string; added: string }>;
  default?: string;
}

export interface BackupRecord {
  time: string;
  name: string;
  path: string;
  type: BackupType;
  reason: string;
  versions: { name: string; commit: string }[];
  verified: boolean;
  copied: { files: number; chunks: number; bytes: number; gitObjects: number };
  /** Distinct bytes re-read and re-hashed in the backup store. */
  verifiedBytes: number;
}

/** A backup's record, plus what it left alone (not recorded). */
export interface BackupResult extends BackupRecord {
  /** Refs the backup store has elsewhere and kept (its line head or labels moved on there). */
  kept: string[];
}

const REGISTRY = 'backups.json';
const RECORDS = 'backups.jsonl';

export async function readRegistry(store: Store): Promise<BackupRegistry> {
  try {
    return JSON.parse(await readFile(path.join(store.dir, REGISTRY), 'utf8')) as BackupRegistry;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { stores: {} };
    throw new MstoreError('ECORRUPT', `${path.join(store.dir, REGISTRY)} is not valid JSON`);
  }
}

function checkBackupName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new MstoreError('EBADNAME', `invalid backup name '${name}' (letters, digits, . _ -)`);
  }
}

/** Opens a registered backup store (a bare store directory, or a workspace's .mstore). */
async function openBackupStore(p: string): Promise<Store> {
  const s = await Store.find(p).catch(() => undefined);
  if (!s || (path.resolve(s.dir) !== path.resolve(p) && path.resolve(s.dir) !== path.resolve(p, STORE_DIR))) {
    throw new MstoreError('EMISSING', `backup store ${p} is not reachable or not an mstore store`);
  }
  return s;
}

/** Registers (creating it as a bare store when the path is absent or empty) a backup store. */
export async function addBackup(store: Store, name: string, target: string): Promise<{ name: string; path: string; created: boolean }> {
  checkBackupName(name);
  const abs = path.resolve(target);
  if (abs === path.resolve(store.dir) || (store.workspace && abs === path.resolve(store.workspace))) {
    throw new MstoreError('EUSAGE', 'a store cannot be its own backup');
  }
  return store.withLock('backup', async () => {
    const reg = await readRegistry(store);
    if (reg.stores[name]) throw new MstoreError('EEXISTS', `backup '${name}' already exists (${reg.stores[name].path})`);
    let created = false;
    const st = await stat(abs).catch(() => undefined);
    if (!st || (st.isDirectory() && (await readdir(abs)).length === 0)) {
      const b = await Store.init(abs, { bare: true });
      await b.close();
      created = true;
    } else {
      await (await openBackupStore(abs)).close();
    }
    reg.stores[name] = { path: abs, added: now().toISOString() };
    reg.default ??= name;
    await atomicWriteFile(path.join(store.dir, REGISTRY), `${JSON.stringify(reg, null, 2)}\n`);
    return { name, path: abs, created };
  });
}

export async function readBackupRecords(store: Store): Promise<BackupRecord[]> {
  return readRecords<BackupRecord>(path.join(store.dir, RECORDS));
}

export interface BackupOptions {
  name?: string;
  type?: BackupType;
  reason?: string;
  /** Revisions to back up; default: every version a ref reaches. */
  revs?: string[];
  /** Commits (with names) instead of revs: used by rm and prune. */
  versions?: Roots;
  onProgress?: (p: { done: number; total: number }) => void;
}

/** The backup store to use: the named one, else the default. Undefined when none is configured. */
export async function chooseBackup(store: Store, name?: string): Promise<{ name: string; path: string } | undefined> {
  const reg = await readRegistry(store);
  if (name) {
    const s = reg.stores[name];
    if (!s) throw new MstoreError('ENOTFOUND', `no backup store named '${name}' (see mstore backup list)`, { what: name });
    return { name, path: s.path };
  }
  const d = reg.default ?? Object.keys(reg.stores)[0];
  return d && reg.stores[d] ? { name: d, path: reg.stores[d].path } : undefined;
}

/**
 * Copies versions to a backup store, verifies every byte there, and records it. The
 * caller holds this store's lock (rm and prune back up inside their own lock).
 */
export async function backupLocked(store: Store, opts: BackupOptions): Promise<BackupResult> {
  const target = await chooseBackup(store, opts.name);
  if (!target) throw new MstoreError('ENOTFOUND', "no backup store is configured; add one with 'mstore backup add NAME PATH'");
  let versions: Roots;
  if (opts.versions) versions = opts.versions;
  else if (opts.revs?.length) {
    versions = new Map();
    for (const rev of opts.revs) {
      const c = await resolveRev(store.repo, rev);
      versions.set(c, [...(versions.get(c) ?? []), rev]);
    }
  } else versions = (await refRoots(store.repo)).roots;
  if (!versions.size) throw new MstoreError('EBADINPUT', 'nothing to back up: the store has no versions');

  // Refs that name these versions go along: version tags, user tags, and line heads.
  const refs = new Map<string, string>();
  const names: { name: string; commit: string }[] = [];
  const all = (await refRoots(store.repo)).roots;
  for (const commit of versions.keys()) {
    const meta = await readMeta(store.repo, commit);
    names.push({ name: meta?.version ?? commit.slice(0, 12), commit });
    for (const ref of all.get(commit) ?? []) {
      const v = await store.repo.readRef(ref);
      if (v) refs.set(ref, v);
    }
    if (meta?.version) {
      const tag = await store.repo.readRef(`refs/tags/${meta.version}`);
      if (tag) refs.set(`refs/tags/${meta.version}`, tag);
    }
    if (meta?.line && (await store.repo.readRef(lineRef(meta.line))) === commit) refs.set(lineRef(meta.line), commit);
  }
  // Labels (status, notes) go along: the notes commit and its history, for every version.
  const notes = await store.repo.readRef(NOTES_REF);
  if (notes) refs.set(NOTES_REF, notes);
  const b = await openBackupStore(target.path);
  let copy: CopyResult;
  try {
    copy = await copyVersions(store, b, { versions, refs, reason: 'backup', message: opts.reason, onProgress: opts.onProgress });
  } finally {
    await b.close();
  }
  const record: BackupRecord = {
    time: now().toISOString(),
    name: target.name,
    path: target.path,
    type: opts.type ?? 'manual',
    reason: opts.reason ?? '',
    versions: names.sort((x, y) => (x.name < y.name ? -1 : 1)),
    verified: copy.verified.ok,
    copied: { files: copy.files, chunks: copy.chunks, bytes: copy.bytes, gitObjects: copy.gitObjects },
    verifiedBytes: copy.verified.bytes,
  };
  await appendRecords(path.join(store.dir, RECORDS), [record]);
  return { ...record, kept: copy.keptRefs };
}

export async function backup(store: Store, opts: BackupOptions): Promise<BackupResult> {
  return store.withLock('backup', () => backupLocked(store, opts));
}

/** Copies a version back from a backup store (verified), restoring its version tag and, if free or behind, its line head. */
export async function restoreFromBackup(store: Store, name: string, rev: string): Promise<{ version: string; commit: string; copied: CopyResult }> {
  const target = await chooseBackup(store, name);
  const b = await openBackupStore(target!.path);
  try {
    const commit = await resolveRev(b.repo, rev);
    const meta = await readMeta(b.repo, commit);
    const refs = new Map<string, string>();
    if (meta?.version) {
      const tag = await b.repo.readRef(`refs/tags/${meta.version}`);
      if (tag) refs.set(`refs/tags/${meta.version}`, tag);
      if (!(await store.repo.readRef(lineRef(meta.line)))) refs.set(lineRef(meta.line), commit);
    }
    const version = meta?.version ?? commit.slice(0, 12);
    const copied = await copyVersions(b, store, { versions: new Map([[commit, [version]]]), refs, reason: 'backup-restore', message: `from backup '${name}'` });
    return { version, commit, copied };
  } finally {
    await b.close();
  }
}
