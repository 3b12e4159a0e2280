/**
 * Labels: mutable annotations (status, notes, eval results added later) on an immutable
 * version, kept as git notes on the version's commit (`refs/notes/commits`, the notes ref
 * git reads by default), so every change is a notes commit (history kept) and
 * `git notes show 'v002^{commit}'` prints them. The note is a JSON object, one key per label.
 * Every move of the notes ref goes through the ref history like any other ref.
 */
import { treeContent, writeLooseObject } from '../repo/git-write.js';
import { MstoreError } from '../lib/errors.js';
import type { Store } from '../repo/store.js';
import { STATUSES, readMeta, resolveRev } from '../repo/versions.js';
import { moveRefs } from '../repo/reflog.js';
import { defaultAuthor } from '../repo/version-write.js';
import { now } from '../lib/clock.js';

export const NOTES_REF = 'refs/notes/commits';

export type Labels = Record<string, string>;

const KEY = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;

/** All notes: annotated commit id -> note blob id. */
async function notesTree(store: Store): Promise<{ head: string | undefined; entries: Map<string, string> }> {
  const head = await store.repo.readRef(NOTES_REF);
  const entries = new Map<string, string>();
  if (!head) return { head, entries };
  const c = await store.repo.readCommit(head);
  const walk = async (tree: string, prefix: string): Promise<void> => {
    // git fans notes out into xx/yyyy… subtrees once there are many: accept both layouts.
    for (const e of await store.repo.readTreeEntries(tree, 'notes tree')) {
      if (e.type === 'tree') await walk(e.oid, prefix + e.name);
      else entries.set(prefix + e.name, e.oid);
    }
  };
  await walk(c.tree, '');
  return { head, entries };
}

function parseNote(text: string, commit: string): Labels {
  try {
    const v = JSON.parse(text) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, typeof x === 'string' ? x : JSON.stringify(x)]));
    }
  } catch {
    // a note written by someone else, in plain text
  }
  return text.trim() ? { note: text.trim() } : {};
}

export async function readLabels(store: Store, commit: string): Promise<Labels> {
  const { entries } = await notesTree(store);
  const blob = entries.get(commit);
  if (!blob) return {};
  return parseNote(Buffer.from(await store.repo.readBlob(blob)).toString('utf8'), commit);
}

/** Labels of every annotated commit (for log). */
export async function allLabels(store: Store): Promise<Map<string, Labels>> {
  const { entries } = await notesTree(store);
  const out = new Map<string, Labels>();
  for (const [commit, blob] of entries) out.set(commit, parseNote(Buffer.from(await store.repo.readBlob(blob)).toString('utf8'), commit));
  return out;
}

export function checkLabel(key: string, value: string | undefined): void {
  if (!KEY.test(key)) throw new MstoreError('EBADNAME', `invalid label name '${key}' (letters, digits, _ . -; at most 64)`);
  if (key === 'status' && value !== undefined && !(STATUSES as readonly string[]).includes(value)) {
    throw new MstoreError('EUSAGE', `invalid status '${value}' (one of ${STATUSES.join(', ')})`);
  }
}

export interface LabelResult {
  version: string | undefined;
  commit: string;
  labels: Labels;
  changed: boolean;
}

/** Sets and unsets labels on a version: one notes commit, recorded in the ref history. */
export async function setLabels(store: Store, rev: string, set: Labels, unset: string[]): Promise<LabelResult> {
  for (const [k, v] of Object.entries(set)) checkLabel(k, v);
  for (const k of unset) checkLabel(k, undefined);
  return store.withLock('label', async () => {
    const repo = store.repo;
    const commit = await resolveRev(repo, rev);
    const meta = await readMeta(repo, commit);
    const { head, entries } = await notesTree(store);
    const old = entries.has(commit) ? parseNote(Buffer.from(await repo.readBlob(entries.get(commit)!)).toString('utf8'), commit) : {};
    for (const k of unset) if (!(k in old)) throw new MstoreError('ENOTFOUND', `${meta?.version ?? commit.slice(0, 12)} has no label '${k}'`, { what: k, where: meta?.version ?? commit });
    const labels: Labels = { ...old, ...set };
    for (const k of unset) delete labels[k];
    const sorted = Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    if (JSON.stringify(sorted) === JSON.stringify(Object.fromEntries(Object.entries(old).sort(([a], [b]) => (a < b ? -1 : 1))))) {
      return { version: meta?.version, commit, labels: sorted, changed: false };
    }
    if (Object.keys(sorted).length) entries.set(commit, await repo.writeBlob(Buffer.from(`${JSON.stringify(sorted, null, 2)}\n`)));
    else entries.delete(commit);
    const tree = await writeLooseObject(store.gitdir, 'tree', treeContent([...entries].sort(([a], [b]) => (a < b ? -1 : 1)).map(([path, oid]) => ({ mode: '100644', path, oid }))));
    const author = defaultAuthor();
    const t = now();
    const sig = { ...author, timestamp: Math.floor(t.getTime() / 1000), timezoneOffset: t.getTimezoneOffset() };
    const what = [...Object.entries(set).map(([k, v]) => `${k}=${v}`), ...unset.map((k) => `-${k}`)].join(' ');
    const notesCommit = await repo.writeCommit({
      message: `label ${meta?.version ?? commit.slice(0, 12)}: ${what}\n`,
      tree,
      parents: head ? [head] : [],
      author: sig,
    });
    await moveRefs(store, [{ ref: NOTES_REF, value: notesCommit }], 'label', { message: `${meta?.version ?? commit.slice(0, 12)}: ${what}` });
    return { version: meta?.version, commit, labels: sorted, changed: true };
  });
}
