/**
 * The ref table: every ref of the repository (full name -> raw value), read from one snapshot
 * file (`cache/refs`, docs/format.md §2.6) instead of one file per ref: a history of 1,000
 * versions has 1,000 tag files, and reading them costs 20-60 µs each here (issue 15).
 *
 * Derived, and only trusted while provably current. It is written by the writer that moved
 * refs (reflog.ts, under the store lock), after the moves, and records what it was made
 * against: the size of the ref history (`reflog.jsonl`, appended before any ref moves, so
 * every mstore move changes it) and the modification time of every folder under refs/ and of
 * packed-refs (a ref written or removed by anything else, real git included, changes its
 * folder's time; a folder made changes its parent's). If any of these differ, the refs are
 * read from their files. A snapshot that cannot be read or parsed is ignored the same way.
 */
import { readFileSync, readdirSync, renameSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';

/** The ref history's file name in a store (reflog.ts writes it). */
export const REFLOG_FILE = 'reflog.jsonl';

interface Snapshot {
  /** Size in bytes of reflog.jsonl when the snapshot was made (-1: absent). */
  journal: number;
  /** Folder under the repository (refs, refs/tags, …; and `packed-refs`) -> mtime in ns. */
  stamps: Record<string, string>;
  /**
   * [full name, raw value] pairs: a Map is made from arrays in a third of the time an object's
   * entries take. (Named apart from the `refs` object of earlier versions, which a reader of
   * those versions then finds missing and reads the ref files instead.)
   */
  refPairs: [string, string][];
  /** [tag ref, the commit its tag object leads to], as packed-refs' `^` lines say (a fact about immutable objects). */
  peeledPairs: [string, string][];
}

export interface RefTableView {
  /** Full name -> raw value (a commit or tag id, or `ref: …` for a symbolic one). */
  refs: Map<string, string>;
  /** Tag ref -> commit, where known. */
  peeled: Map<string, string>;
}

function mtimeNs(file: string): string | undefined {
  return statSync(file, { bigint: true, throwIfNoEntry: false })?.mtimeNs.toString();
}

export class RefTable {
  private readonly file: string;

  constructor(
    private readonly gitdir: string,
    private readonly journal: string,
  ) {
    this.file = path.join(gitdir, '..', 'cache', 'refs');
  }

  private journalSize(): number {
    return statSync(this.journal, { throwIfNoEntry: false })?.size ?? -1;
  }

  /** Every folder under refs/ (relative to the repository), with its mtime; packed-refs too. */
  private stamps(): Record<string, string> {
    const out: Record<string, string> = {};
    const walk = (rel: string): void => {
      const abs = path.join(this.gitdir, rel);
      const t = mtimeNs(abs);
      if (t === undefined) return;
      out[rel] = t;
      let entries;
      try {
        entries = readdirSync(abs, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) if (e.isDirectory()) walk(`${rel}/${e.name}`);
    };
    walk('refs');
    out['packed-refs'] = mtimeNs(path.join(this.gitdir, 'packed-refs')) ?? 'absent';
    return out;
  }

  /** The snapshot's refs when it is current, else undefined. */
  snapshot(): RefTableView | undefined {
    let snap: Snapshot;
    try {
      snap = JSON.parse(readFileSync(this.file, 'utf8')) as Snapshot;
    } catch {
      return undefined;
    }
    if (!snap || typeof snap !== 'object' || snap.journal !== this.journalSize() || !snap.stamps || !Array.isArray(snap.refPairs) || !Array.isArray(snap.peeledPairs)) return undefined;
    // Every recorded folder unchanged. A folder made since (a new line's refs) changed the
    // time of its parent, which is recorded, so nothing needs listing: refs/tags holds a file
    // per version, and listing it cost `log -n 20` 4 ms at 1,000 versions.
    const recorded = Object.entries(snap.stamps);
    if (snap.stamps.refs === undefined || snap.stamps['packed-refs'] === undefined) return undefined;
    for (const [rel, stamp] of recorded) {
      const now = rel === 'packed-refs' ? (mtimeNs(path.join(this.gitdir, rel)) ?? 'absent') : mtimeNs(path.join(this.gitdir, rel));
      if (now !== stamp) return undefined;
    }
    const pairs = (a: unknown[]): a is [string, string][] => a.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && typeof p[1] === 'string');
    if (!pairs(snap.refPairs) || !pairs(snap.peeledPairs)) return undefined;
    return { refs: new Map(snap.refPairs), peeled: new Map(snap.peeledPairs) };
  }

  /** Refs read from their files: loose ones over packed-refs, as git reads them. */
  private fromFiles(): Map<string, string> {
    const out = new Map<string, string>();
    try {
      for (const line of readFileSync(path.join(this.gitdir, 'packed-refs'), 'utf8').split('\n')) {
        const m = /^([0-9a-f]{40}) (refs\/\S+)$/.exec(line);
        if (m) out.set(m[2], m[1]);
      }
    } catch {
      // no packed-refs
    }
    const walk = (rel: string): void => {
      let entries;
      try {
        entries = readdirSync(path.join(this.gitdir, rel), { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const name = `${rel}/${e.name}`;
        if (e.isDirectory()) walk(name);
        else if (e.isFile()) {
          try {
            out.set(name, readFileSync(path.join(this.gitdir, name), 'utf8').trim());
          } catch {
            // removed while listing
          }
        }
      }
    };
    walk('refs');
    return out;
  }

  /** False when a snapshot that validates lists other refs or values than the ref files (fsck). */
  matchesFiles(): boolean {
    const snap = this.snapshot();
    if (!snap) return true;
    const files = this.fromFiles();
    if (files.size !== snap.refs.size) return false;
    for (const [ref, value] of files) if (snap.refs.get(ref) !== value) return false;
    return true;
  }

  /** Every ref, from the snapshot when it is current, else from the ref files (nothing peeled). */
  read(): RefTableView {
    return this.snapshot() ?? { refs: this.fromFiles(), peeled: new Map() };
  }

  /**
   * Makes the snapshot again after refs moved (caller holds the store lock, so no mstore writer
   * moves refs meanwhile): `refs` is the table as it now is when the caller knows it (the
   * snapshot that was current before its moves, with them applied), else the ref files are
   * read. Best effort: a failure leaves an old snapshot, which no longer validates.
   */
  async refresh(table: RefTableView | undefined, peel: (oid: string) => Promise<string | undefined>): Promise<void> {
    try {
      const refs = table?.refs ?? this.fromFiles();
      const peeled: [string, string][] = [];
      for (const [ref, value] of refs) {
        if (!ref.startsWith('refs/tags/') || !/^[0-9a-f]{40}$/.test(value)) continue;
        const known = table?.peeled.get(ref);
        const commit = known ?? (await peel(value));
        if (commit) peeled.push([ref, commit]);
      }
      const snap: Snapshot = { journal: this.journalSize(), stamps: this.stamps(), refPairs: [...refs], peeledPairs: peeled };
      mkdirSync(path.dirname(this.file), { recursive: true });
      const tmp = `${this.file}.tmp`; // one writer at a time (the store lock); a leftover is overwritten
      writeFileSync(tmp, JSON.stringify(snap));
      renameSync(tmp, this.file);
    } catch {
      // read-only or full: readers read the ref files
    }
  }
}
