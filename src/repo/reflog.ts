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
import { checkRefName, DEFAULT_MAX_REFS, shown } from './ref-names.js';
import { learnRecords } from './versions.js';
import { withRefFolderSyncsDeferred } from './git-fs.js';
import { REFLOG_FILE } from './ref-table.js';
import { localRefs } from './refs.js';

/** What the ref history needs of a store: not Store itself, which calls finishLastOperation (no cycle). */
export interface RefStore {
  readonly dir: string;
  readonly repo: GitRepo;
  /** The store's configuration; `maxRefs` caps the refs it holds (default DEFAULT_MAX_REFS). */
  readonly config?: { readonly maxRefs?: number };
}

export { REFLOG_FILE };

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
  | 'consolidate'
  | 'rollback';

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
  /** Compare-and-swap: the value the ref must hold now (null: it must not exist); undefined: any. */
  expect?: string | null;
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
 * The one way a group of refs moves (commit, tag, rm, restore, push, pull, import, backups,
 * labels, deploy): all or none. First every move is checked without writing anything: its
 * name (ref-names.ts), the compare-and-swap expectation, create-only, a folder/file clash with
 * an existing ref or another ref of the group, and the store's ref cap. Then the history
 * entries are made durable (write-ahead), then the refs are written, deletions first. If a
 * write fails midway, the refs already moved are put back (recorded as a `rollback`). A crash
 * in the middle is finished from the history by the next writer (finishLastOperation). Caller
 * holds the store lock. Returns the entries written (moves to the value a ref already has are none).
 */
export async function moveRefs(
  store: RefStore,
  moves: RefMove[],
  reason: RefReason,
  opts: { op?: string; message?: string } = {},
): Promise<RefLogEntry[]> {
  const entries = await planMoves(store, moves, reason, opts);
  if (!entries.length) return entries;
  // The ref table as it was, if its snapshot is current: updated with these moves below.
  const table = store.repo.refTable.snapshot();
  await appendRecords(journalPath(store), entries);
  await withRefFolderSyncsDeferred(store.repo.gitdir, () => applyEntries(store, entries, reason));
  if (table) {
    for (const e of entries) {
      table.peeled.delete(e.ref);
      if (e.new === null) table.refs.delete(e.ref);
      else table.refs.set(e.ref, e.new);
    }
  }
  await store.repo.refTable.refresh(table, (oid) => store.repo.peelTag(oid));
  // The refs have moved; caching what they name is an optimisation and cannot undo that.
  // With no cache yet (a store from before it), everything the refs name is learnt once.
  const learn = store.repo.records.exists() ? entries.flatMap((e) => (e.new ? [e.new] : [])) : [...(await localRefs(store)).entries()].filter(([r]) => !r.startsWith('refs/notes/')).map(([, v]) => v);
  await learnRecords(store.repo, learn).catch(() => undefined);
  return entries;
}

/** The entries of a group of moves, every check done and nothing written; throws on the first refusal. */
async function planMoves(store: RefStore, moves: RefMove[], reason: RefReason, opts: { op?: string; message?: string }): Promise<RefLogEntry[]> {
  const repo = store.repo;
  const op = opts.op ?? newOpId();
  const time = now().toISOString();
  const seen = new Set<string>();
  const entries: RefLogEntry[] = [];
  for (const m of moves) {
    if (seen.has(m.ref)) throw new MstoreError('EBADINPUT', `${shown(m.ref)} appears twice in one update; no ref moved`, { what: m.ref });
    seen.add(m.ref);
    if (m.value !== null) checkRefName(m.ref);
    const old = (await repo.readRef(m.ref)) ?? null;
    if (m.create && old) throw new MstoreError('ECONFLICT', `${m.ref.replace(/^refs\/(tags|heads)\//, '')} already exists`, { what: m.ref });
    if (m.expect !== undefined && old !== m.expect) {
      const now = old === null ? 'no longer exists' : `is at ${old.slice(0, 12)} now`;
      throw new MstoreError('EREJECTED', `${m.ref} ${now}${m.expect ? `, not ${m.expect.slice(0, 12)}` : ''} (it moved meanwhile); no ref moved`, { what: m.ref });
    }
    if (m.value === null && !old) throw new MstoreError('ENOTFOUND', `${m.ref} does not exist`, { what: m.ref });
    if (old === m.value) continue;
    entries.push({ time, ref: m.ref, old, new: m.value, reason, op, ...(opts.message ? { message: opts.message } : {}) });
  }
  const deleted = new Set(entries.filter((e) => e.new === null).map((e) => e.ref));
  const created = entries.filter((e) => e.old === null).map((e) => e.ref);
  const createdSet = new Set(created);
  const clash = (ref: string, other: string): MstoreError =>
    new MstoreError('EBADNAME', `${ref} cannot be created: the ref ${other} exists, and a name cannot be both a ref and a folder of refs; no ref moved`, { what: ref });
  for (const ref of created) {
    const parts = ref.split('/');
    for (let i = 3; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (createdSet.has(prefix) || (!deleted.has(prefix) && (await repo.readRef(prefix)))) throw clash(ref, prefix);
    }
    const below = (await repo.listRefs(ref)).map((r) => `${ref}/${r}`).find((r) => !deleted.has(r));
    if (below) throw clash(ref, below);
  }
  const grows = created.length - deleted.size;
  if (grows > 0) {
    const max = store.config?.maxRefs ?? DEFAULT_MAX_REFS;
    const count = (await repo.listRefs('refs')).length + grows;
    if (count > max) {
      throw new MstoreError('EREJECTED', `refused: this would make ${count} refs, over the store's limit of ${max} (config maxRefs); no ref moved`, { what: created[0] });
    }
  }
  // Deletions first: a ref deleted and one created in its place (a folder) never clash on disk.
  return [...entries.filter((e) => e.new === null), ...entries.filter((e) => e.new !== null)];
}

async function writeEntry(repo: GitRepo, e: { ref: string; new: string | null }): Promise<void> {
  if (e.new === null) await repo.deleteRef(e.ref);
  else await repo.writeRef(e.ref, e.new, true);
}

/** Errors of a ref write that are about its name (what the checks above should have caught). */
const NAME_ERRNOS = new Set(['EISDIR', 'ENOTDIR', 'EEXIST', 'ENAMETOOLONG', 'EINVAL']);

/**
 * Ref writes in flight at once after the deletions: each is fdatasynced, and syncs issued
 * together share the file system's journal commits (a first push of 1,000 tags spent 1.2 s
 * waiting on 1,000 sequential syncs). Their order does not matter: the ref history holds the group.
 */
const PARALLEL_REF_WRITES = 16;

/**
 * Writes the entries: deletions one by one first, then the rest several at a time; on a
 * failure waits for the writes in flight, puts back the ones written, then throws.
 */
async function applyEntries(store: RefStore, entries: RefLogEntry[], reason: RefReason): Promise<void> {
  const done: RefLogEntry[] = [];
  let failed: { e: RefLogEntry; err: unknown } | undefined;
  const write = async (e: RefLogEntry): Promise<void> => {
    try {
      await writeEntry(store.repo, e);
      done.push(e);
    } catch (err) {
      failed ??= { e, err };
    }
  };
  let i = 0;
  for (; !failed && i < entries.length && entries[i].new === null; i++) await write(entries[i]);
  const lane = async (): Promise<void> => {
    while (!failed && i < entries.length) await write(entries[i++]);
  };
  await Promise.all(Array.from({ length: PARALLEL_REF_WRITES }, lane));
  if (!failed) return;
  const { e, err } = failed;
  const op = newOpId();
  const time = now().toISOString();
  const undo: RefLogEntry[] = done.reverse().map((d) => ({ time, ref: d.ref, old: d.new, new: d.old, reason: 'rollback', op, message: `${reason} failed at ${e.ref}` }));
  if (undo.length) {
    // Recorded when it can be (on a full disk the record may not fit; the undo happens anyway,
    // and the history's entries are read against each ref's current value).
    await appendRecords(journalPath(store), undo).catch(() => undefined);
    for (const u of undo) await writeEntry(store.repo, u).catch(() => undefined);
  }
  const errno = (err as NodeJS.ErrnoException).code;
  if (err instanceof MstoreError) throw err;
  if (errno && NAME_ERRNOS.has(errno)) throw new MstoreError('EBADNAME', `cannot write ${shown(e.ref)} (${errno}); no ref of this ${reason} moved`, { what: e.ref });
  throw err;
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
  // Every group moves all or none; a killed commit, consolidate or deploy is not made to have
  // happened after the fact (its version tag, if written, stays; deploy reconciles itself).
  if (['commit', 'consolidate', 'deploy'].includes(last[0].reason)) return [];
  const todo: RefLogEntry[] = [];
  for (const e of last) {
    const cur = (await store.repo.readRef(e.ref)) ?? null;
    if (cur === e.new) continue;
    if (cur !== e.old) return [];
    todo.push(e);
  }
  for (const e of todo) await writeEntry(store.repo, e);
  return todo;
}

/**
 * The entries newest first, each with whether its move happened. Entries are written before
 * their refs move (write-ahead), so a group whose first ref write failed (a full disk), or a
 * command killed before its refs moved, leaves entries for moves that never happened. A move
 * happened when the ref's next value, the next entry's `old` or else the ref's value now, is
 * the one it set.
 */
export async function* refLogWithOutcome(store: RefStore): AsyncGenerator<RefLogEntry & { happened: boolean }> {
  /** Each ref's value right after the entries read so far (read from the end). */
  const after = new Map<string, string | null>();
  for await (const e of refLogFromEnd(store)) {
    if (!after.has(e.ref)) after.set(e.ref, (await store.repo.readRef(e.ref)) ?? null);
    const happened = after.get(e.ref) === e.new;
    if (happened) after.set(e.ref, e.old);
    yield { ...e, happened };
  }
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
