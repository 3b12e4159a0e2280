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
import { appendFileSync, closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, renameSync, writeFileSync } from 'node:fs';
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

/** Lookups answered by searching the file before it is indexed whole (see RecordCache.find). */
const SEARCHED_LOOKUPS = 64;
/** What a search reads from the file's end first (then four times as much, until found or whole). */
const TAIL_BYTES = 256 * 1024;

export class RecordCache {
  /** The file's last bytes, read on demand (tail). */
  private data: Buffer | undefined;
  private dataWhole = false;
  /**
   * `<kind><id>` -> the bytes after the key, `<crc> <json>`, checked and decoded only when used.
   * Built only after SEARCHED_LOOKUPS lookups, or when entries are added or listed.
   */
  private lines: Map<string, Buffer> | undefined;
  private lookups = 0;
  private pending: string[] = [];

  constructor(private readonly file: string) {}

  /** The whole file (an empty buffer when there is none or it cannot be read). */
  private bytes(): Buffer {
    return this.tail(Infinity).data;
  }

  /**
   * At least the last `want` bytes of the file (all of it when shorter), and whether that is
   * the whole file. `log -n 20` finds its records in the last few hundred KiB of a file that a
   * thousand versions make 1.2 MB, and reading all of it cost 4 ms here.
   */
  private tail(want: number): { data: Buffer; whole: boolean } {
    if (this.data && (this.dataWhole || this.data.length >= want)) return { data: this.data, whole: this.dataWhole };
    let fd: number | undefined;
    try {
      fd = openSync(this.file, 'r');
      const size = fstatSync(fd).size;
      const length = Math.min(size, want);
      const data = Buffer.allocUnsafe(length);
      let n = 0;
      for (let r = -1; n < length && r !== 0; n += r) r = readSync(fd, data, n, length - n, size - length + n);
      this.data = data.subarray(0, n);
      this.dataWhole = n === size;
    } catch {
      this.data = Buffer.alloc(0); // no cache yet, or unreadable: everything is read from git
      this.dataWhole = true;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    return { data: this.data, whole: this.dataWhole };
  }

  /** Whether the line at `at` (ending at `end`) has the shape kind + 40 hex, space, 8 hex, space, json. */
  private static shaped(data: Buffer, at: number, end: number): boolean {
    return end - at >= 52 && data[at + 41] === 0x20 && data[at + 50] === 0x20;
  }

  private load(): Map<string, Buffer> {
    if (this.lines) return this.lines;
    const lines = new Map<string, Buffer>();
    const data = this.bytes();
    for (let at = 0; at < data.length; ) {
      let end = data.indexOf(0x0a, at);
      if (end < 0) end = data.length;
      // the first line of a key is used
      if (RecordCache.shaped(data, at, end)) {
        const key = data.toString('latin1', at, at + 41);
        if (!lines.has(key)) lines.set(key, data.subarray(at + 42, end));
      }
      at = end + 1;
    }
    this.lines = lines;
    return lines;
  }

  /**
   * The newest line of a key (`wholeOnly`: the newest whose CRC holds). `log -n 20` of a
   * 1,000-version history looks up 20 versions, appended last: searching the file backwards
   * for them costs less than indexing its thousands of lines, which is done from the 65th
   * lookup on. Any line of a key whose CRC holds is as good as another (all were derived from
   * the same immutable objects).
   */
  private find(key: string, wholeOnly: boolean): Buffer | undefined {
    if (this.lines || ++this.lookups > SEARCHED_LOOKUPS) {
      const entry = this.load().get(key);
      return entry && (!wholeOnly || RecordCache.checked(entry)) ? entry : undefined;
    }
    const needle = Buffer.from(`\n${key} `, 'latin1');
    for (let want = TAIL_BYTES; ; want *= 4) {
      const { data, whole } = this.tail(want);
      const found = RecordCache.search(data, whole, needle, wholeOnly);
      if (found || whole) return found;
    }
  }

  /**
   * The newest line of `needle`'s key in `data` (the file's last bytes; `whole`: all of it);
   * a line is only taken when its start lies inside `data`.
   */
  private static search(data: Buffer, whole: boolean, needle: Buffer, wholeOnly: boolean): Buffer | undefined {
    for (let from = data.length; from >= 0; ) {
      let at = data.lastIndexOf(needle, from);
      if (at < 0) {
        // the file's first line has no newline before it
        if (!whole || !data.subarray(0, needle.length - 1).equals(needle.subarray(1))) return undefined;
        at = -1;
      }
      const start = at + 1;
      let end = data.indexOf(0x0a, start);
      if (end < 0) end = data.length;
      const entry = data.subarray(start + 42, end);
      if (RecordCache.shaped(data, start, end) && (!wholeOnly || RecordCache.checked(entry))) return entry;
      if (at < 0) return undefined;
      from = at - 1;
    }
    return undefined;
  }

  /** The json of an entry whose CRC holds, else undefined (a torn or damaged line). */
  private static checked(entry: Buffer): string | undefined {
    const json = entry.subarray(9);
    return (crc32(json) >>> 0).toString(16).padStart(8, '0') === entry.toString('latin1', 0, 8) ? json.toString('utf8') : undefined;
  }

  private get<T>(kind: Kind, oid: string): T | undefined {
    const entry = this.find(kind + oid, true);
    const json = entry && RecordCache.checked(entry);
    if (json === undefined) return undefined; // absent, torn or damaged: read from git
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
    lines.set(kind + oid, Buffer.from(`${crcHex(json)} ${json}`));
    this.pending.push(`${kind}${oid} ${crcHex(json)} ${json}\n`);
  }

  /** Whether the cache file exists (a store made before it, or one whose cache was removed, has none). */
  exists(): boolean {
    return existsSync(this.file);
  }

  /** Whether a commit's record is cached (nothing parsed). */
  hasCommit(oid: string): boolean {
    return this.find(`c${oid}`, false) !== undefined;
  }

  hasTag(oid: string): boolean {
    return this.find(`t${oid}`, false) !== undefined;
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
      const json = RecordCache.checked(entry);
      if (json !== undefined) yield { kind: key[0] as Kind, oid: key.slice(1), json };
    }
  }

  /** Appends what this process learnt; a store that cannot be written keeps it in memory only. */
  flush(): void {
    if (!this.pending.length) return;
    // Learnt newest first (a walk down from the refs): written oldest first, so that the
    // newest versions' lines are the file's last, where a search starts (find).
    const text = this.pending.reverse().join('');
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
    const lines = new Map<string, Buffer>();
    // Tags, then commits oldest first (by committer time), so that the newest versions' lines
    // are the file's last, as appends leave them (find searches from the end).
    // Ties (commits of one second) in reverse of the order given: a walk down from the refs
    // gives a line's commits newest first.
    const time = (r: CommitRecord): number => r.commit?.committer?.timestamp ?? 0;
    const byTime = [...commits].map((e, i) => ({ e, i })).sort((a, b) => time(a.e[1]) - time(b.e[1]) || b.i - a.i).map((x) => x.e);
    for (const [kind, entries] of [['t', [...tags]], ['c', byTime]] as const) {
      for (const [oid, value] of entries) {
        const json = JSON.stringify(value);
        lines.set(kind + oid, Buffer.from(`${crcHex(json)} ${json}`));
        out.push(`${kind}${oid} ${crcHex(json)} ${json}\n`);
      }
    }
    mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`; // one writer at a time (the store lock); a leftover is overwritten
    writeFileSync(tmp, out.join(''));
    renameSync(tmp, this.file);
    this.lines = lines;
    this.pending = [];
  }
}
