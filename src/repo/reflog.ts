/**
 * Ref history: every move of a ref or tag, recorded before the ref moves (write-ahead),
 * so a ref never changes without a trace and a deleted version can be found again.
 * One append-only JSON-lines journal (lib/journal.ts), `reflog.jsonl` in the store (docs/format.md §13).
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { MstoreError } from '../lib/errors.js';
import { now } from '../lib/clock.js';
import { appendRecords, readRecords, recordsFromEnd } from '../lib/journal.js';
import type { GitRepo } from './git.js';

/** What the ref history needs of a store: not Store itself, which calls finishLastOperation (no cycle). */
export interface RefStore {
  readonly dir: string;
  readonly repo: GitRepo;
}

export const REFLOG_FILE = 'reflog.jsonl';

export type RefReason =
  | 'commit'
  | 'tag'
  | 'delete'
  | 'rm'
  | 'prune'
  | 'restore'
  | 'pull'
  | 'push'
  | 'deploy'
  | 'import'
  | 'backup'
  | 'backup-restore'
  | 'label'
  | 'consolidate';

export interface RefLogEntry {
  /** ISO 8601, from the store clock. */
  time: string;
  ref: string;
  /** The ref's value before the move (null: it did not exist). */
  old: string | null;
  /** The value after (null: deleted). */
  new: string | null;
  reason: RefReason;
  /** Moves made by one command share an op id (restore uses it to bring back a whole rm). */
  op: string;
  message?: string;
}

export interface RefMove {
  ref: string;
  /** New value, or null to delete. */
  value: string | null;
  /** Refuse if the ref exists (create only). */
  create?: boolean;
}

export function newOpId(): string {
  return randomBytes(6).toString('hex');
}

function journalPath(store: RefStore): string {
  return path.join(store.dir, REFLOG_FILE);
}

const OID = /^[0-9a-f]{40}$/;

/**
 * A record of the ref history as moveRefs writes it: a time, a ref under refs/, old and new
 * each an object id or null, a reason and an op id (strings). Anything else in the file (a
 * damaged or hand-edited line that still parses as a JSON object) is not a move: readers
 * skip it like a torn line, so no command acts on it or crashes on it.
 */
function isRefLogEntry(v: unknown): v is RefLogEntry {
  const e = v as Partial<Record<keyof RefLogEntry, unknown>>;
  const oidOrNull = (x: unknown): boolean => x === null || (typeof x === 'string' && OID.test(x));
  return (
    typeof e.time === 'string' && !Number.isNaN(Date.parse(e.time)) &&
    typeof e.ref === 'string' && e.ref.startsWith('refs/') &&
    oidOrNull(e.old) && oidOrNull(e.new) &&
    typeof e.reason === 'string' && typeof e.op === 'string' &&
    (e.message === undefined || typeof e.message === 'string')
  );
}

/** Every entry, oldest first. Torn lines (a crash mid-append) and records of the wrong shape are skipped. */
export async function readRefLog(store: RefStore): Promise<RefLogEntry[]> {
  return (await readRecords<unknown>(journalPath(store))).filter(isRefLogEntry);
}

/** The entries newest first, read from the end: for callers that need only the latest few. */
export async function* refLogFromEnd(store: RefStore): AsyncGenerator<RefLogEntry> {
  for await (const e of recordsFromEnd<unknown>(journalPath(store))) if (isRefLogEntry(e)) yield e;
}

/**
 * Moves refs as one recorded operation: the history entries are made durable first, then
 * the refs are written in order. Caller holds the store lock. Returns the entries written.
 */
export async function moveRefs(
  store: RefStore,
  moves: RefMove[],
  reason: RefReason,
  opts: { op?: string; message?: string } = {},
): Promise<RefLogEntry[]> {
  const repo = store.repo;
  const op = opts.op ?? newOpId();
  const time = now().toISOString();
  const entries: RefLogEntry[] = [];
  for (const m of moves) {
    const old = (await repo.readRef(m.ref)) ?? null;
    if (m.create && old) throw new MstoreError('ECONFLICT', `${m.ref.replace(/^refs\/(tags|heads)\//, '')} already exists`);
    if (m.value === null && !old) throw new MstoreError('ENOTFOUND', `${m.ref} does not exist`, { what: m.ref });
    if (old === m.value) continue;
    entries.push({ time, ref: m.ref, old, new: m.value, reason, op, ...(opts.message ? { message: opts.message } : {}) });
  }
  await appendRecords(journalPath(store), entries);
  const done: RefLogEntry[] = [];
  try {
    for (const e of entries) {
      if (e.new === null) await repo.deleteRef(e.ref);
      else await repo.writeRef(e.ref, e.new, true);
      done.push(e);
    }
  } catch (err) {
    // A ref write refused (a full disk): put back the refs already moved, newest first, so the
    // operation is all or nothing (a created ref is deleted, which needs no space).
    for (const e of done.reverse()) {
      await (e.old === null ? repo.deleteRef(e.ref) : repo.writeRef(e.ref, e.old, true)).catch(() => undefined);
    }
    throw err;
  }
  return entries;
}

/**
 * After a crash (a writer's stale lock taken over): the moves of the last recorded push or pull
 * that had not happened yet are made. They were recorded before any of its refs moved, and
 * only after everything they point at was written and verified, so finishing them is how
 * "all refs of one operation move together" survives a kill between two ref writes. A ref
 * that has since moved elsewhere leaves the operation alone. Caller holds the store lock.
 */
export async function finishLastOperation(store: RefStore): Promise<RefLogEntry[]> {
  // The trailing entries sharing one op id, read from the end (the file is not read whole).
  const last: RefLogEntry[] = [];
  for await (const e of refLogFromEnd(store)) {
    if (last.length && e.op !== last[0].op) break;
    last.unshift(e);
  }
  if (!last.length) return [];
  // Only transfers promise that their refs move together; a killed commit is not made to
  // have happened after the fact.
  if (!['push', 'pull'].includes(last[0].reason)) return [];
  const todo: RefLogEntry[] = [];
  for (const e of last) {
    const cur = (await store.repo.readRef(e.ref)) ?? null;
    if (cur === e.new) continue;
    if (cur !== e.old) return [];
    todo.push(e);
  }
  for (const e of todo) {
    if (e.new === null) await store.repo.deleteRef(e.ref);
    else await store.repo.writeRef(e.ref, e.new, true);
  }
  return todo;
}

/** Whether an entry moved the ref `name` (exact name, or a short name under refs/tags/ or refs/heads/). */
export function movesRef(name: string): (e: RefLogEntry) => boolean {
  const names = name.startsWith('refs/') ? [name] : [`refs/tags/${name}`, `refs/heads/${name}`];
  return (e) => names.includes(e.ref);
}

/** The newest entry that `match` accepts, read from the end. */
export async function latestEntry(store: RefStore, match: (e: RefLogEntry) => boolean): Promise<RefLogEntry | undefined> {
  for await (const e of refLogFromEnd(store)) if (match(e)) return e;
  return undefined;
}

/** The entries for one ref (see movesRef), newest first. */
export function entriesFor(entries: RefLogEntry[], name: string): RefLogEntry[] {
  return entries.filter(movesRef(name)).reverse();
}

/**
 * Why a name no longer resolves, from the ref history: "v002 was removed by rm at <time>;
 * 'mstore restore v002' brings it back until gc frees its data". Undefined if it never existed.
 */
export async function removalHint(store: RefStore, name: string): Promise<string | undefined> {
  const e = await latestEntry(store, movesRef(name));
  if (!e || e.new !== null) return undefined;
  return `${name} was removed by ${e.reason} at ${e.time}; 'mstore restore ${name}' brings it back until gc frees its data (or 'mstore backup restore NAME ${name}')`;
}
