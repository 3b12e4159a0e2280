/**
 * The record of every deploy attempt in the serving store: the journal (lib/journal.ts)
 * `deploy/attempts.jsonl`, one JSON object per line, appended with fdatasync. An attempt
 * writes a `started` line, then its outcome under the same id, so one killed mid-way shows
 * as unfinished.
 */
import { readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { appendRecords, readRecords } from '../lib/journal.js';
import type { Store } from './store.js';
import { readDeployConfig, triggerRef } from './deploy-config.js';

export type DeployAction = 'deploy' | 'rollback' | 'reconcile';
export type DeployResult = 'started' | 'ok' | 'failed';

export interface DeployAttempt {
  id: string;
  /** ISO 8601: when the attempt started. */
  time: string;
  /** When its outcome was recorded. */
  finished?: string;
  action: DeployAction;
  version: string;
  commit: string;
  result: DeployResult;
  /** Why it failed. */
  reason?: string;
  /** The version live before the attempt (null: none). */
  previous?: string | null;
  seconds?: number;
}

export interface DeployStatus {
  configured: boolean;
  /** The trigger ref (full name), when configured. */
  ref?: string;
  root?: string;
  /** What `current` points at now. */
  live: { version: string; commit: string; since: string | null } | null;
  /** Every attempt, newest first, outcome merged into its start. */
  history: DeployAttempt[];
}

export function deployDir(store: Store): string {
  return path.join(store.dir, 'deploy');
}

export function newAttemptId(): string {
  return randomBytes(6).toString('hex');
}

function attemptsFile(store: Store): string {
  return path.join(deployDir(store), 'attempts.jsonl');
}

export async function appendAttempt(store: Store, a: DeployAttempt): Promise<void> {
  await appendRecords(attemptsFile(store), [a]);
}

/** Attempts oldest first, each with its last line's fields (torn lines are skipped). */
export async function readAttempts(store: Store): Promise<DeployAttempt[]> {
  const byId = new Map<string, DeployAttempt>();
  for (const a of await readRecords<DeployAttempt>(attemptsFile(store))) {
    const first = byId.get(a.id);
    byId.set(a.id, first ? { ...a, time: first.time, finished: a.time, previous: a.previous ?? first.previous } : a);
  }
  return [...byId.values()];
}

/** The marker a materialised version directory carries (written last, before its rename). */
export const MARKER = '.mstore-deploy.json';

export interface Marker {
  version: string;
  commit: string;
  materialised: string;
  files: { path: string; size: number; sha256: string; mtimeMs: number }[];
}

export async function readMarker(dir: string): Promise<Marker | undefined> {
  try {
    return JSON.parse(await readFile(path.join(dir, MARKER), 'utf8')) as Marker;
  } catch {
    return undefined;
  }
}

export async function deployStatus(store: Store): Promise<DeployStatus> {
  const cfg = await readDeployConfig(store);
  const attempts = await readAttempts(store);
  const history = [...attempts].reverse();
  if (!cfg) return { configured: false, live: null, history };
  let live: DeployStatus['live'] = null;
  const target = await readlink(path.join(cfg.root, 'current')).catch(() => undefined);
  if (target) {
    const m = await readMarker(path.resolve(cfg.root, target));
    if (m) {
      const ok = history.find((a) => a.result === 'ok' && a.commit === m.commit);
      live = { version: m.version, commit: m.commit, since: ok?.finished ?? ok?.time ?? null };
    }
  }
  return { configured: true, ref: triggerRef(cfg), root: cfg.root, live, history };
}
