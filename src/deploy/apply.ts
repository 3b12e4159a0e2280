/**
 * Making a version live on the serving machine (docs/deploy.md), run by the post-receive
 * hook when the trigger ref moves, and by `deploy rollback` / serve's start-up reconcile.
 * Every step that changes what is live is atomic, so a kill at any moment leaves `current`
 * on a complete, verified directory (the old version or the new):
 *   0. the version's name (and <dir>) come from the version tag this store holds for the commit,
 *      never from pushed metadata (deployName);
 *   1. materialise into <root>/.mstore-tmp-<pid>-<rand>/ (checkout re-hashes while writing), re-hash
 *      every file against the version's sha256, write the marker, fsync, rename to <root>/<dir>/
 *      — a directory already there whose marker and file stats match is reused as is;
 *   2. switch <root>/current: a new symlink renamed over the old one, directory fsynced;
 *   3. register, set_active, health check on the inference API (retries with backoff);
 *   4. on failure after the switch: `current` back, set_active for the previous version, the
 *      trigger ref moved back to what is live, and the attempt recorded as failed.
 */
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, readlink, rename, rm, stat, symlink, writeFile, open } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Store } from '../repo/store.js';
import { MstoreError } from '../lib/errors.js';
import { StoreLock } from '../lib/lock.js';
import { checkout } from '../ops/checkout.js';
import { listVersionFiles } from '../repo/version-files.js';
import { localRefs, parseVersionTag } from '../repo/refs.js';
import { fsyncDir, tmpName, TMP_PREFIX } from '../lib/fsutil.js';
import { moveRefs } from '../repo/reflog.js';
import { now } from '../lib/clock.js';
import { readDeployConfig, triggerRef, type DeployConfig, type TemplateValues } from '../repo/deploy-config.js';
import { callApi } from './inference-api.js';
import { appendAttempt, deployDir, newAttemptId, readAttempts, readMarker, MARKER, type DeployAction, type DeployAttempt, type Marker } from '../repo/deploy-records.js';

export interface ApplyOptions {
  action?: DeployAction;
  /** Progress lines (the hook prints them; the pusher sees them prefixed `remote: `). */
  onLine?: (line: string) => void;
}

/** A version's directory name under the root: `exp/v002` -> `exp--v002`. */
export function versionDirName(version: string): string {
  return version.replace(/\//g, '--');
}

/** Directory names a deploy may create under the root: never dot-led (.tmp-, .trash-, .current-), never `current`. */
const DIR_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export function safeDirName(name: string): boolean {
  return DIR_NAME.test(name) && !name.includes('..') && name !== 'current';
}

/**
 * The name a deploy of `commit` goes by, from what this store itself holds, never from the
 * pushed version.json (which a pusher writes): a version tag whose commit it is (`v004`,
 * `exp/v002`; the default line first, then the shortest), else the commit's first 12 hex.
 * Its directory name always passes safeDirName.
 */
export async function deployName(store: Store, commit: string): Promise<string> {
  const names: string[] = [];
  for (const [ref, value] of await localRefs(store)) {
    if (!parseVersionTag(ref)) continue;
    if ((await store.repo.peelToCommit(value).catch(() => undefined)) === commit) names.push(ref.slice('refs/tags/'.length));
  }
  names.sort((a, b) => Number(a.includes('/')) - Number(b.includes('/')) || a.length - b.length || (a < b ? -1 : a > b ? 1 : 0));
  return names.find((n) => safeDirName(versionDirName(n))) ?? commit.slice(0, 12);
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 4 * 1024 * 1024 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** True when every file the marker lists is still there with its size and mtime (no re-hash: rollback is a switch). */
async function markerHolds(dir: string, m: Marker): Promise<boolean> {
  for (const f of m.files) {
    const st = await lstat(path.join(dir, f.path)).catch(() => undefined);
    if (!st || (st.isFile() && (st.size !== f.size || st.mtimeMs !== f.mtimeMs))) return false;
  }
  return true;
}

/** Materialises and verifies `commit` into <root>/<dir>/, or reuses an intact one. */
async function materialise(store: Store, cfg: DeployConfig, commit: string, version: string, say: (l: string) => void): Promise<string> {
  const dirName = versionDirName(version);
  if (!safeDirName(dirName)) throw new MstoreError('EBADNAME', `'${dirName.slice(0, 80)}' is not a deploy directory name`);
  const final = path.join(cfg.root, dirName);
  const existing = await readMarker(final);
  if (existing?.commit === commit && (await markerHolds(final, existing))) {
    say(`${version} is already materialised in ${final}`);
    return final;
  }
  const tmp = tmpName(final);
  try {
    say(`materialising ${version} into ${final}`);
    // A fresh directory of the deploy root, which deploy.json may place inside the store.
    await checkout(store, { rev: commit, cwd: cfg.root, to: tmp, allowInsideStore: true });
    const files = await listVersionFiles(store.repo, commit);
    const marker: Marker = { version, commit, materialised: now().toISOString(), files: [] };
    let bytes = 0;
    for (const f of files) {
      const abs = path.join(tmp, f.path);
      const st = await lstat(abs);
      const digest = f.kind === 'link' ? createHash('sha256').update(await readlink(abs)).digest('hex') : await sha256File(abs);
      if (digest !== f.oid) throw new MstoreError('ECORRUPT', `${version}:${f.path} materialised as ${digest}, expected ${f.oid}`);
      if (f.kind !== 'link') {
        const fh = await open(abs, 'r');
        await fh.sync().finally(() => fh.close());
      }
      marker.files.push({ path: f.path, size: st.size, sha256: digest, mtimeMs: st.mtimeMs });
      bytes += f.size;
    }
    await writeFile(path.join(tmp, MARKER), `${JSON.stringify(marker, null, 2)}\n`, { flush: true });
    await fsyncDir(tmp);
    say(`verified ${files.length} files (${(bytes / 2 ** 20).toFixed(1)} MiB) of ${version} against their sha256`);
    if (await lstat(final).catch(() => undefined)) {
      // A damaged or foreign directory by that name: move it aside, never into the live path.
      const aside = tmpName(final);
      await rename(final, aside);
      await rm(aside, { recursive: true, force: true });
    }
    await rename(tmp, final);
    await fsyncDir(cfg.root);
    return final;
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Points <root>/current at `dirName` (or removes it for null) with one rename. */
async function switchCurrent(root: string, dirName: string | null): Promise<void> {
  const current = path.join(root, 'current');
  if (dirName === null) {
    await rm(current, { force: true });
  } else {
    const tmp = tmpName(path.join(root, 'current'));
    await symlink(dirName, tmp);
    await rename(tmp, current);
  }
  await fsyncDir(root);
}

async function liveDir(root: string): Promise<string | null> {
  const t = await readlink(path.join(root, 'current')).catch(() => undefined);
  return t ? path.basename(t) : null;
}

/** Removes leftovers of killed attempts and version directories beyond `keep`. */
async function tidy(cfg: DeployConfig, attempts: DeployAttempt[], live: string | null): Promise<void> {
  const names = await readdir(cfg.root).catch(() => [] as string[]);
  for (const n of names) if (n.startsWith(TMP_PREFIX) || n.startsWith('.tmp-') || n.startsWith('.trash-') || n.startsWith('.current-')) await rm(path.join(cfg.root, n), { recursive: true, force: true });
  // Keep the live directory and the `keep` most recently deployed others (rollback targets).
  const recent: string[] = [];
  for (const a of [...attempts].reverse()) {
    const d = versionDirName(a.version);
    if (a.result === 'ok' && d !== live && !recent.includes(d)) recent.push(d);
  }
  const keep = new Set([...(live ? [live] : []), ...recent.slice(0, cfg.keep)]);
  for (const n of names) {
    if (n.startsWith('.') || n === 'current' || keep.has(n)) continue;
    const st = await stat(path.join(cfg.root, n)).catch(() => undefined);
    if (st?.isDirectory() && (await readMarker(path.join(cfg.root, n)))) await rm(path.join(cfg.root, n), { recursive: true, force: true });
  }
}

/**
 * Deploys `commit` (already in the store). Never throws for a failed deploy: the attempt,
 * recorded, says what happened; throws only when the store has no deploy configuration.
 */
export async function applyDeploy(store: Store, commit: string, opts: ApplyOptions = {}): Promise<DeployAttempt> {
  const cfg = await readDeployConfig(store);
  if (!cfg) throw new MstoreError('ENOTFOUND', `${store.dir} has no deploy configuration (deploy.json; see docs/deploy.md)`, { what: 'deploy.json', where: store.dir });
  const say = (l: string): void => opts.onLine?.(`deploy: ${l}`);
  await mkdir(cfg.root, { recursive: true });
  await mkdir(deployDir(store), { recursive: true });
  const lock = await StoreLock.acquire(path.join(deployDir(store), 'lock'), 'deploy', 10 * 60_000);
  const started = Date.now();
  try {
    const version = await deployName(store, commit);
    const prevDir = await liveDir(cfg.root);
    const prevMarker = prevDir ? await readMarker(path.join(cfg.root, prevDir)) : undefined;
    const attempt: DeployAttempt = {
      id: newAttemptId(),
      time: now().toISOString(),
      action: opts.action ?? 'deploy',
      version,
      commit,
      result: 'started',
      previous: prevMarker?.version ?? null,
    };
    await appendAttempt(store, attempt);
    const values = (v: string, dir: string, c: string): TemplateValues => ({ version: v, name: cfg.name.replace(/\{version\}/g, v).replace(/\{commit\}/g, c), path: dir, commit: c });
    const finish = async (result: 'ok' | 'failed', reason?: string): Promise<DeployAttempt> => {
      const done: DeployAttempt = { ...attempt, time: now().toISOString(), result, ...(reason ? { reason } : {}), seconds: (Date.now() - started) / 1000 };
      await appendAttempt(store, done);
      return { ...done, time: attempt.time, finished: done.time };
    };

    let dir: string;
    try {
      dir = await materialise(store, cfg, commit, version, say);
    } catch (e) {
      const reason = `materialising ${version} failed: ${(e as Error).message.split('\n')[0]}`;
      await resetTrigger(store, cfg, prevMarker?.commit ?? null, commit);
      return finish('failed', reason);
    }
    const v = values(version, dir, commit);
    try {
      await switchCurrent(cfg.root, path.basename(dir));
      say(`current -> ${path.basename(dir)}`);
      await callApi(cfg.api, 'register', cfg.api.register, v);
      say(`registered ${v.name} (${dir})`);
      await callApi(cfg.api, 'set_active', cfg.api.setActive, v);
      say(`${v.name} is active`);
      await callApi(cfg.api, 'health check', cfg.api.health, v, cfg.api.health.expectStatus);
    } catch (e) {
      const reason = (e as Error).message.split('\n')[0];
      // Back to what was live, on disk and in the API (best effort there: it may be down).
      await switchCurrent(cfg.root, prevDir);
      let restored = prevMarker ? `current back on ${prevMarker.version}` : 'current removed (nothing was live before)';
      if (prevMarker && prevDir) {
        const pv = values(prevMarker.version, path.join(cfg.root, prevDir), prevMarker.commit);
        restored += await callApi(cfg.api, 'set_active', cfg.api.setActive, pv).then(
          () => `, ${pv.name} active again`,
          (err: Error) => `; set_active of ${pv.name} also failed (${err.message})`,
        );
      }
      await resetTrigger(store, cfg, prevMarker?.commit ?? null, commit);
      return finish('failed', `${reason}; ${restored}`);
    }
    const done = await finish('ok');
    say(`${version} is live (${done.seconds?.toFixed(2)} s)`);
    await tidy(cfg, await readAttempts(store), path.basename(dir)).catch(() => undefined);
    return done;
  } finally {
    await lock.release();
  }
}

/**
 * After a failed attempt the trigger ref goes back to what is live, so it always names the
 * live version once a deploy has finished, and pushing the same version again retries.
 */
async function resetTrigger(store: Store, cfg: DeployConfig, live: string | null, attempted: string): Promise<void> {
  const ref = triggerRef(cfg);
  await store.withLock('deploy', async () => {
    const cur = (await store.repo.readRef(ref)) ?? null;
    if (cur !== attempted || cur === live) return; // moved again meanwhile: that push deploys next
    await moveRefs(store, [{ ref, value: live }], 'deploy', { message: `deploy of ${attempted.slice(0, 12)} failed` });
  });
}

/**
 * serve's start-up: if the trigger ref names something other than what is live (a deploy killed
 * mid-way), deploy it. If it names what is live but the newest attempt never finished (killed
 * after the switch of `current`, before or during register/set_active), apply it again: the
 * directory is reused and the inference API is told, so that its active model is `current`.
 */
export async function reconcileDeploy(store: Store, opts: ApplyOptions = {}): Promise<DeployAttempt | undefined> {
  const cfg = await readDeployConfig(store);
  if (!cfg) return undefined;
  // A server killed between recording a ref update and making it leaves its lock behind: taking
  // the lock finishes that update (finishLastOperation), so the trigger ref read below is the
  // one the last push left, not one a later push's lock take-over would move without a deploy.
  await store.withLock('deploy reconcile', async () => undefined);
  const want = await store.repo.readRef(triggerRef(cfg));
  if (!want) return undefined;
  const commit = await store.repo.peelToCommit(want);
  const dir = await liveDir(cfg.root);
  const live = dir ? await readMarker(path.join(cfg.root, dir)) : undefined;
  if (live?.commit === commit && (await readAttempts(store)).at(-1)?.result !== 'started') return undefined;
  return applyDeploy(store, commit, { ...opts, action: 'reconcile' });
}
