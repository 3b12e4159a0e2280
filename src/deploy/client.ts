/**
 * The pusher's side of deploy: send the version (push), then move the remote's trigger ref
 * to it with a compare-and-swap; the remote's post-receive hook makes it live and streams its
 * progress back. The outcome is read from the remote's deploy record, not guessed.
 */
import type { Store } from '../repo/store.js';
import { MstoreError } from '../lib/errors.js';
import { resolveRev } from '../repo/versions.js';
import type { Remote } from '../remote/remote.js';
import { push, type PushResult } from '../remote/push.js';
import type { Progress } from '../lib/progress.js';
import type { DeployAttempt, DeployStatus } from '../repo/deploy-records.js';

export interface DeployClientOptions {
  onProgress?: (p: Progress) => void;
  onRemoteOutput?: (line: string) => void;
}

export interface DeployOutcome {
  remote: string;
  version: string;
  commit: string;
  push?: PushResult;
  attempt: DeployAttempt | undefined;
  status: DeployStatus;
}

async function statusOf(remote: Remote): Promise<DeployStatus & { ref: string }> {
  if (!remote.deployStatus) throw new MstoreError('EBADINPUT', `${remote.display} cannot deploy: deploys run on a store served by 'mstore serve' (or a path)`);
  const st = await remote.deployStatus();
  if (!st.configured || !st.ref) throw new MstoreError('ENOTFOUND', `${remote.display} has no deploy configuration (deploy.json in the serving store; see docs/deploy.md)`, { what: 'deploy.json', where: remote.display });
  return { ...st, ref: st.ref };
}

/** Moves the trigger ref to `commit` (compare-and-swap; any direction: rollbacks go back). */
async function trigger(remote: Remote, ref: string, commit: string, message: string, opts: DeployClientOptions, live: string | undefined): Promise<DeployAttempt | undefined> {
  const cur = (await remote.listRefs()).get(ref) ?? null;
  const before = (await statusOf(remote)).history.length;
  if (cur === commit) {
    if (live === commit) return undefined; // already live: nothing to do
    // The ref is there but the version is not live (a deploy was cut short): move it off and back.
    await remote.updateRefs([{ ref, old: cur, new: null }], { force: true, message });
    await remote.updateRefs([{ ref, old: null, new: commit }], { force: true, message, onRemoteOutput: opts.onRemoteOutput });
  } else {
    await remote.updateRefs([{ ref, old: cur, new: commit }], { force: true, message, onRemoteOutput: opts.onRemoteOutput });
  }
  const after = await statusOf(remote);
  // The newest attempt for this commit made since we moved the ref.
  return after.history.slice(0, Math.max(0, after.history.length - before)).find((a) => a.commit === commit);
}

export async function deploy(store: Store, remote: Remote, rev: string, opts: DeployClientOptions = {}): Promise<DeployOutcome> {
  const st = await statusOf(remote);
  const commit = await resolveRev(store.repo, rev);
  const pushed = await push(store, remote, { revs: [rev], onProgress: opts.onProgress, onRemoteOutput: opts.onRemoteOutput });
  const version = rev;
  const attempt = await trigger(remote, st.ref, commit, `deploy ${rev}`, opts, st.live?.commit);
  return { remote: remote.display, version, commit, push: pushed, attempt, status: await statusOf(remote) };
}

/**
 * Back to an earlier version already on the remote: `rev` (a version name it deployed, or a
 * revision of this store), by default the newest successful deploy other than the live one.
 */
export async function rollback(store: Store, remote: Remote, rev: string | undefined, opts: DeployClientOptions = {}): Promise<DeployOutcome> {
  const st = await statusOf(remote);
  let target: DeployAttempt | undefined;
  if (rev === undefined) {
    target = st.history.find((a) => a.result === 'ok' && a.commit !== st.live?.commit);
    if (!target) throw new MstoreError('ENOTFOUND', `${remote.display} has no earlier good deploy to roll back to`, { where: remote.display });
  } else {
    target = st.history.find((a) => a.result === 'ok' && a.version === rev);
    if (!target) {
      const commit = await resolveRev(store.repo, rev).catch(() => undefined);
      target = commit ? st.history.find((a) => a.result === 'ok' && a.commit === commit) : undefined;
      if (!target) throw new MstoreError('ENOTFOUND', `${remote.display} never deployed '${rev}' successfully; use 'mstore deploy ${remote.display} ${rev}'`, { what: rev, where: remote.display });
    }
  }
  const attempt = await trigger(remote, st.ref, target.commit, `rollback to ${target.version}`, opts, st.live?.commit);
  return { remote: remote.display, version: target.version, commit: target.commit, attempt, status: await statusOf(remote) };
}

export async function remoteDeployStatus(remote: Remote): Promise<DeployStatus> {
  return statusOf(remote);
}
