/**
 * Set-up done in the test process through the library instead of a CLI process each (a CLI
 * start costs ~0.2 s of CPU before any work): for steps a test needs done, not the steps it is
 * about. The store is opened for the step and closed after it, so CLI processes started
 * afterwards find it unlocked, as after `mstore commit`.
 */
import { Store } from '../src/repo/store.js';
import { commit, type CommitResult } from '../src/ops/commit.js';
import { openRemote } from '../src/remote/open.js';
import { pull, type PullResult } from '../src/remote/pull.js';
import { push, type PushResult } from '../src/remote/push.js';

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

/** `env` set in this process while `fn` runs (an HTTP remote's token is read from it), then put back. */
async function withEnv<T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.keys(env).map((k) => [k, process.env[k]] as const);
  Object.assign(process.env, env);
  try {
    return await fn();
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** What `mstore pull REMOTE [--force]` run in `dir` does; throws where it fails. */
export function pullHere(dir: string, remoteName: string, opts: { force?: boolean; env?: Record<string, string> } = {}): Promise<PullResult> {
  return withEnv(opts.env ?? {}, () =>
    withStoreAt(dir, async (s) => {
      const { remote } = await openRemote(s, remoteName);
      try {
        return await pull(s, remote, { force: opts.force });
      } finally {
        await remote.close();
      }
    }),
  );
}

/** What `mstore push REMOTE` run in `dir` does; throws where it fails. */
export function pushHere(dir: string, remoteName: string, env: Record<string, string> = {}): Promise<PushResult> {
  return withEnv(env, () =>
    withStoreAt(dir, async (s) => {
      const { remote } = await openRemote(s, remoteName);
      try {
        return await push(s, remote);
      } finally {
        await remote.close();
      }
    }),
  );
}
