/**
 * Set-up done in the test process through the library instead of a CLI process each (a CLI
 * start costs ~0.2 s of CPU before any work): for steps a test needs done, not the steps it is
 * about. The store is opened for the step and closed after it, so CLI processes started
 * afterwards find it unlocked, as after `mstore commit`.
 */
import { Store } from '../src/repo/store.js';
import { commit, type CommitResult } from '../src/ops/commit.js';

/** `fn` with the store of `dir` (a workspace or a bare store) open in this process. */
export async function withStoreAt<T>(dir: string, fn: (s: Store) => Promise<T>): Promise<T> {
  const s = await Store.find(dir);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** What `mstore commit -m MESSAGE` run in `ws` does; throws (as that exits non-zero) where it fails. */
export function commitHere(ws: string, message: string): Promise<CommitResult> {
  return withStoreAt(ws, (s) => commit(s, { cwd: ws, message }));
}
