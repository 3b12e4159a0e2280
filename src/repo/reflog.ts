/**
 * Ref history: every move of a ref or tag, recorded before the ref moves (write-ahead),
 * so a ref never changes without a trace and a deleted version can be found again.
 * One append-only JSON-lines file, `reflog.jsonl` in the store (docs/format.md §9).
 */
import { open, readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { MstoreError } from '../lib/errors.js';
import { now } from '../lib/clock.js';
import type { Store } from './store.js';

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

function journalPath(store: Store): string {
  return path.join(store.dir, REFLOG_FILE);
}

/** Every entry, oldest first. A torn last line (crash mid-append) is ignored. */
export async function readRefLog(store: Store): Promise<RefLogEntry[]> {
  let text: string;
  try {
    text = await readFile(journalPath(store), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: RefLogEntry[] = [];
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (!line) return;
    try {
      out.push(JSON.parse(line) as RefLogEntry);
    } catch {
      if (i < lines.length - 1 && lines.slice(i + 1).some((l) => l)) {
        throw new MstoreError('ECORRUPT', `${journalPath(store)} line ${i + 1} is not valid JSON`);
      }
    }
  });
  return out;
}

/** Appends entries durably (one write, then fdatasync). */
async function appendEntries(store: Store, entries: RefLogEntry[]): Promise<void> {
  if (!entries.length) return;
  const fh = await open(journalPath(store), 'a+');
  try {
    const { size } = await fh.stat();
    let text = entries.map((e) => JSON.stringify(e)).join('\n') + '\n';
    if (size > 0) {
      // A crash may have left a torn line without its newline: start on a fresh line.
      const last = Buffer.alloc(1);
      await fh.read(last, 0, 1, size - 1);
      if (last[0] !== 0x0a) text = `\n${text}`;
    }
    await fh.write(text);
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/**
 * Moves refs as one recorded operation: the history entries are made durable first, then
 * the refs are written in order. Caller holds the store lock. Returns the entries written.
 */
export async function moveRefs(
  store: Store,
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
  await appendEntries(store, entries);
  for (const e of entries) {
    if (e.new === null) await repo.deleteRef(e.ref);
    else await repo.writeRef(e.ref, e.new, true);
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
export async function finishLastOperation(store: Store): Promise<RefLogEntry[]> {
  const entries = await readRefLog(store);
  if (!entries.length) return [];
  const op = entries[entries.length - 1].op;
  let i = entries.length;
  while (i > 0 && entries[i - 1].op === op) i--;
  // Only transfers promise that their refs move together; a killed commit is not made to
  // have happened after the fact.
  if (!['push', 'pull'].includes(entries[i].reason)) return [];
  const todo: RefLogEntry[] = [];
  for (const e of entries.slice(i)) {
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

/** The entries for one ref (exact name, or a short name under refs/tags/ or refs/heads/), newest first. */
export function entriesFor(entries: RefLogEntry[], name: string): RefLogEntry[] {
  const names = name.startsWith('refs/') ? [name] : [`refs/tags/${name}`, `refs/heads/${name}`, ...(name === 'latest' ? ['refs/heads/latest'] : [])];
  return entries.filter((e) => names.includes(e.ref)).reverse();
}

/**
 * Why a name no longer resolves, from the ref history: "v002 was removed by rm at <time>;
 * 'mstore restore v002' brings it back until gc frees its data". Undefined if it never existed.
 */
export async function removalHint(store: Store, name: string): Promise<string | undefined> {
  const e = entriesFor(await readRefLog(store), name)[0];
  if (!e || e.new !== null) return undefined;
  return `${name} was removed by ${e.reason} at ${e.time}; 'mstore restore ${name}' brings it back until gc frees its data (or 'mstore backup restore NAME ${name}')`;
}
