/** `status`: the workspace against `latest`, trusting a stat-cache entry only while it matches, is not racy and names what the store holds (identify.ts cachedIdentity); files are read as one snapshot. */
import type { Store } from '../repo/store.js';
import type { StatEntry } from '../repo/index-db.js';
import { cachedIdentity, identifyFile } from '../repo/identify.js';
import { cacheable, gitMode, nowNs, scanWorkspace, statEntry } from '../repo/workspace.js';
import { lineRef, DEFAULT_LINE, readMeta } from '../repo/versions.js';
import { modelEntries } from '../repo/version-files.js';
import type { FlatTree } from '../repo/git.js';

export interface StatusResult {
  /** The version compared against (latest of the default line), if any. */
  version: string | undefined;
  commit: string | undefined;
  added: string[];
  modified: string[];
  deleted: string[];
  unchanged: number;
  /** Files that had to be re-hashed because their stat changed. */
  hashed: number;
}

export async function status(store: Store): Promise<StatusResult> {
  const root = store.requireWorkspace('status');
  const repo = store.repo;
  const index = store.index;
  const head = await repo.readRef(lineRef(DEFAULT_LINE));
  const headFlat: FlatTree = head ? modelEntries(await repo.readFlatTree((await repo.readCommit(head)).tree)) : new Map();
  const scanAt = nowNs();
  const { files } = await scanWorkspace(root);
  const res: StatusResult = {
    version: head ? (await readMeta(repo, head))?.version : undefined,
    commit: head,
    added: [],
    modified: [],
    deleted: [],
    unchanged: 0,
    hashed: 0,
  };
  const refresh = new Map<string, StatEntry | null>();
  const seen = new Set<string>();
  for (const f of files) {
    seen.add(f.path);
    const old = headFlat.get(f.path);
    const cached = index.stat(f.path);
    const hit = await cachedIdentity(repo, index, cached, f.stat);
    let blob: string;
    if (hit) {
      blob = hit.blob;
    } else {
      const id = await identifyFile(repo, f, store.config.textMaxBytes);
      res.hashed++;
      blob = id.blob;
      // Only content that a version already holds may enter the cache (commit trusts it).
      if (old && old.blob === blob && cacheable(id.stat, scanAt)) refresh.set(f.path, statEntry(id.stat, id.kind, id.oid, id.blob, scanAt));
    }
    if (!old) res.added.push(f.path);
    else if (old.blob !== blob || old.mode !== gitMode(f)) res.modified.push(f.path);
    else res.unchanged++;
  }
  for (const p of headFlat.keys()) if (!seen.has(p)) res.deleted.push(p);
  res.deleted.sort();
  // A read command may refresh the cache: lmdb serialises this with any writer. A store that
  // cannot be written (read-only mount) keeps its cache as it is.
  if (index.writable) index.updateStats(refresh);
  return res;
}
