/** The files of a version as users see them: path, mode, kind, size and sha256 oid. */
import { sha256Hex } from '../lib/hashing.js';
import { parsePointer } from '../format/pointer.js';
import type { StatKind } from './index-db.js';
import type { FileMode, FlatTree, GitRepo } from './git.js';

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
  const data = await repo.readBlob(blob);
  if (mode === '120000') return { path: p, mode, kind: 'link', size: data.length, oid: sha256Hex(data), blob };
  const ptr = parsePointer(data, p);
  if (ptr) return { path: p, mode, kind: 'lfs', size: ptr.size, oid: ptr.oid, blob };
  return { path: p, mode, kind: 'git', size: data.length, oid: sha256Hex(data), blob };
}

export async function listVersionFiles(repo: GitRepo, commit: string): Promise<VersionFile[]> {
  const c = await repo.readCommit(commit);
  const flat = modelEntries(await repo.readFlatTree(c.tree));
  const out: VersionFile[] = [];
  for (const [p, e] of flat) out.push(await describeEntry(repo, p, e.mode, e.blob));
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

