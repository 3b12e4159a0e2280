/** The files of a version as users see them: path, mode, kind, size and sha256 oid. */
import { sha256Hex } from '../lib/hashing.js';
import { parsePointer } from '../format/pointer.js';
import type { StatKind } from './index-db.js';
import { MstoreError } from '../lib/errors.js';
import { badEntriesLine, type BadEntry, type FileMode, type FlatTree, type GitRepo } from './git.js';
import { inVersionOf, versionNameOf } from './versions.js';

export interface VersionFile {
  path: string;
  mode: FileMode;
  kind: StatKind;
  size: number;
  oid: string;
  blob: string;
}

/** The model files of a tree, without the metadata record. */
export function modelEntries(flat: FlatTree): FlatTree {
  const out: FlatTree = new Map();
  for (const [p, e] of flat) if (!p.startsWith('.mstore/')) out.set(p, e);
  return out;
}

export async function describeEntry(repo: GitRepo, p: string, mode: FileMode, blob: string): Promise<VersionFile> {
  const data = await repo.readBlob(blob, p);
  if (mode === '120000') return { path: p, mode, kind: 'link', size: data.length, oid: sha256Hex(data), blob };
  const ptr = parsePointer(data, p);
  if (ptr) return { path: p, mode, kind: 'lfs', size: ptr.size, oid: ptr.oid, blob };
  return { path: p, mode, kind: 'git', size: data.length, oid: sha256Hex(data), blob };
}

/**
 * The model files of a version, sorted by path, and the entries of its tree that a version
 * cannot hold (format/path-names.ts), which are not in `files`. A damaged or missing object
 * is an error naming it and the version.
 */
export async function listVersionFilesChecked(repo: GitRepo, commit: string): Promise<{ files: VersionFile[]; bad: BadEntry[] }> {
  return inVersionOf(repo, commit, async () => {
    const c = await repo.readCommit(commit);
    const { flat, bad } = await repo.readFlatTreeChecked(c.tree);
    const out: VersionFile[] = [];
    for (const [p, e] of modelEntries(flat)) out.push(await describeEntry(repo, p, e.mode, e.blob));
    return { files: out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)), bad };
  });
}

/** One error for a version's entries it cannot hold, naming the version and the entries (ECORRUPT); `also` is added to the message. */
export async function badEntriesError(repo: GitRepo, commit: string, bad: BadEntry[], also = ''): Promise<MstoreError> {
  const name = await versionNameOf(repo, commit);
  return new MstoreError('ECORRUPT', `${name}: ${badEntriesLine(bad)}${also}`, { what: bad[0].path, where: name });
}

/** The model files of a version, sorted by path; a tree entry a version cannot hold is an error naming it. */
export async function listVersionFiles(repo: GitRepo, commit: string): Promise<VersionFile[]> {
  const { files, bad } = await listVersionFilesChecked(repo, commit);
  if (bad.length) throw await badEntriesError(repo, commit, bad);
  return files;
}
