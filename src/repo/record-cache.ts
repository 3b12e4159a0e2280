/**
 * The record cache (`cache/records`, docs/format.md §2.6): what listing a history needs from
 * each version record — a commit's parsed header and its `.mstore/version.json`, a tag's
 * target and message — kept in one file, so that `log`, `tag --list` and `show` read one file
 * instead of five git objects per version (issue 15).
 *
 * Derived data, never the truth: every entry is keyed by the id of an immutable git object
 * and says only what that object (and the objects it names) hold, so no ref move can make one
 * stale and nothing needs invalidating; refs are always read from git. Each line carries a
 * CRC-32 of its text: a torn or damaged line is ignored and the fact read from git again.
 * `verify` and `fsck` never use it (they read the objects), and `fsck` rewrites it from the
 * objects (`rebuild`). Where the store cannot be written the cache is only read.
 *
 * A line: `<kind><40-hex id> <8-hex crc32 of the json> <json>\n`, kind `c` (commit) or `t`
 * (annotated tag). Appended with one write per batch (O_APPEND: lines of concurrent writers do
 * not interleave); duplicates are harmless (the first good one is used).
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import type { ParsedCommit } from '../format/git-links.js';

export interface CommitRecord {
  commit: ParsedCommit;
  /** The parsed `.mstore/version.json`; null when the version has none. */
  meta: unknown;
  /** The objects it was derived from: the commit, the trees on the way to the record, its blob. */
  sources: string[];
}

export interface TagRecord {
  /** The object the tag names and its type, as the tag's headers say. */
  object: string;
  type: string;
  tag: string;
  message: string;
}

type Kind = 'c' | 't';

const crcHex = (text: string): string => (crc32(text) >>> 0).toString(16).padStart(8, '0');

export class RecordCache {
  /** `<kind><id>` -> the line after the key: `<crc> <json>` (checked and parsed on use). */
  private lines: Map<string, string> | undefined;
  private pending: string[] = [];

  constructor(private readonly file: string) {}

  private load(): Map<string, string> {
    if (this.lines) return this.lines;
    const lines = new Map<string, string>();
    let text = '';
    try {
      text = readFileSync(this.file, 'utf8');
    } catch {
      // no cache yet, or unreadable: everything is read from git
    }
    for (let at = 0; at < text.length; ) {
      let end = text.indexOf('\n', at);
      if (end < 0) end = text.length;
      const line = text.slice(at, end);
      at = end + 1;
      // kind + 40 hex, space, 8 hex, space, json; the first line of a key is used
      if (line.length < 52 || line[41] !== ' ' || line[50] !== ' ') continue;
      const key = line.slice(0, 41);
      if (!lines.has(key)) lines.set(key, line.slice(42));
    }
    this.lines = lines;
    return lines;
  }

  private get<T>(kind: Kind, oid: string): T | undefined {
    const entry = this.load().get(kind + oid);
    if (entry === undefined) return undefined;
    const json = entry.slice(9);
    if (crcHex(json) !== entry.slice(0, 8)) return undefined; // torn or damaged: read from git
    try {
      return JSON.parse(json) as T;
    } catch {
      return undefined;
    }
  }

  private put(kind: Kind, oid: string, value: unknown): void {
    const lines = this.load();
    if (lines.has(kind + oid)) return;
    const json = JSON.stringify(value);
    lines.set(kind + oid, `${crcHex(json)} ${json}`);
    this.pending.push(`${kind}${oid} ${crcHex(json)} ${json}\n`);
  }

  /** Whether the cache file exists (a store made before it, or one whose cache was removed, has none). */
  exists(): boolean {
    return existsSync(this.file);
  }

  /** Whether a commit's record is cached (nothing parsed). */
  hasCommit(oid: string): boolean {
    return this.load().has(`c${oid}`);
  }

  hasTag(oid: string): boolean {
    return this.load().has(`t${oid}`);
  }

  commit(oid: string): CommitRecord | undefined {
    return this.get<CommitRecord>('c', oid);
  }

  putCommit(oid: string, record: CommitRecord): void {
    this.put('c', oid, record);
  }

  tag(oid: string): TagRecord | undefined {
    return this.get<TagRecord>('t', oid);
  }

  putTag(oid: string, record: TagRecord): void {
    this.put('t', oid, record);
  }

  /** Every entry whose line is whole (its CRC holds): kind, object id and the json text. */
  *entries(): Generator<{ kind: Kind; oid: string; json: string }> {
    for (const [key, entry] of this.load()) {
      const json = entry.slice(9);
      if (crcHex(json) === entry.slice(0, 8)) yield { kind: key[0] as Kind, oid: key.slice(1), json };
    }
  }

  /** Appends what this process learnt; a store that cannot be written keeps it in memory only. */
  flush(): void {
    if (!this.pending.length) return;
    const text = this.pending.join('');
    this.pending = [];
    try {
      mkdirSync(path.dirname(this.file), { recursive: true });
      appendFileSync(this.file, text);
    } catch {
      // read-only or full: the cache is an optimisation, the records are in git
    }
  }

  /** Replaces the file with exactly these entries (fsck: derived again from the objects). */
  rebuild(commits: Map<string, CommitRecord>, tags: Map<string, TagRecord>): void {
    const out: string[] = [];
    const lines = new Map<string, string>();
    for (const [kind, map] of [['c', commits], ['t', tags]] as const) {
      for (const [oid, value] of map) {
        const json = JSON.stringify(value);
        lines.set(kind + oid, `${crcHex(json)} ${json}`);
        out.push(`${kind}${oid} ${crcHex(json)} ${json}\n`);
      }
    }
    mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp-${process.pid}`;
    writeFileSync(tmp, out.join(''));
    renameSync(tmp, this.file);
    this.lines = lines;
    this.pending = [];
  }
}
