/**
 * Checks the lmdb index file (`index/data.mdb`) before lmdb maps it: lmdb trusts its file,
 * and a zeroed, truncated or overwritten one makes it read outside the map and die by a
 * signal. `indexFileProblem` (every open) reads the two meta pages and the roots they name;
 * `indexPageProblems` (fsck) walks every page of every tree. Both only read. Layout (LMDB
 * 0.9/1.0 as lmdb-js 3 builds it, 64-bit): docs/format.md §6.1. Rules kept: a problem is one
 * line naming the page; nothing here throws on any bytes.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import path from 'node:path';

const HDR = 24; // page header: pgno u64 | txnid u64 | pad u16 | flags u16 | lower u16 | upper u16 (or pages u32)
const MAGIC = 0xbeefc0de;
const DATA_VERSION = 2;
const P_BRANCH = 0x01;
const P_LEAF = 0x02;
const P_OVERFLOW = 0x04;
const P_META = 0x08;
const F_BIGDATA = 0x01;
const F_SUBDATA = 0x02;
const F_DUPDATA = 0x04;
const NODE = 8; // node header: lo u16 | hi u16 | flags u16 | ksize u16
const INVALID = 0xffffffffffffffffn;
const MAX_DEPTH = 64;

export const INDEX_FILE = 'data.mdb';

interface Meta {
  psize: number;
  lastPg: number;
  txnid: bigint;
  /** Roots of the free-page tree and the main tree (undefined: empty tree). */
  roots: (number | undefined)[];
}

/**
 * A readable view of the index file, one page at a time. For a walk of every page, a file up to
 * WHOLE_READ_BYTES is read in one call (the open-time walk of a 2.3 MB index made 560 page
 * reads, 20 ms of a `status` whose budget is 100 ms); a look at a few pages reads those only.
 */
const WHOLE_READ_BYTES = 8 * 1024 * 1024;

class PageFile {
  readonly size: number;
  private readonly whole: Buffer | undefined;
  private constructor(
    private readonly fd: number,
    everyPage: boolean,
  ) {
    this.size = fstatSync(fd).size;
    if (everyPage && this.size <= WHOLE_READ_BYTES) {
      const b = Buffer.allocUnsafe(this.size);
      let n = 0;
      for (let r = -1; n < b.length && r !== 0; n += r) r = readSync(fd, b, n, b.length - n, n);
      this.whole = b.subarray(0, n);
    }
  }
  static open(file: string, opts: { everyPage?: boolean } = {}): PageFile {
    return new PageFile(openSync(file, 'r'), !!opts.everyPage);
  }
  /** Up to `length` bytes at `offset` (fewer at the end of the file); callers only read them. */
  read(offset: number, length: number): Buffer {
    if (this.whole) return this.whole.subarray(Math.min(offset, this.whole.length), Math.min(offset + length, this.whole.length));
    const b = Buffer.alloc(length);
    const n = readSync(this.fd, b, 0, length, offset);
    return b.subarray(0, n);
  }
  close(): void {
    closeSync(this.fd);
  }
}

function readMeta(f: PageFile, i: number, psize: number): Meta | string {
  const p = f.read(i * psize, HDR + 144);
  if (p.length < HDR + 144) return `meta page ${i} is cut off (file is ${f.size} bytes)`;
  if (p.readBigUInt64LE(0) !== BigInt(i) || !(p.readUInt16LE(18) & P_META)) return `meta page ${i} has no meta page header`;
  if (p.readUInt32LE(24) !== MAGIC) return `meta page ${i} has no LMDB magic number`;
  if (p.readUInt32LE(28) !== DATA_VERSION) return `meta page ${i} has format version ${p.readUInt32LE(28)}, not ${DATA_VERSION}`;
  const own = p.readUInt32LE(48);
  if (own !== psize) return `meta page ${i} says pages are ${own} bytes, meta page 0 says ${psize}`;
  const last = p.readBigUInt64LE(144);
  if (last < 1n || (last + 1n) * BigInt(psize) > BigInt(f.size)) {
    return `meta page ${i} says the last page is ${last}, but the file holds ${Math.floor(f.size / psize)} pages (truncated?)`;
  }
  const lastPg = Number(last);
  const roots: (number | undefined)[] = [];
  for (const [at, name] of [[88, 'free-page'], [136, 'main']] as const) {
    const r = p.readBigUInt64LE(at);
    if (r === INVALID) roots.push(undefined);
    else if (r < 2n || r > last) return `meta page ${i}: the ${name} tree's root page ${r} is outside pages 2..${lastPg}`;
    else roots.push(Number(r));
  }
  return { psize, lastPg, txnid: p.readBigUInt64LE(152), roots };
}

/** Both meta pages, or why they cannot be used. lmdb opens the one with the higher txnid. */
function readMetas(f: PageFile): { current: Meta } | string {
  if (f.size === 0) return 'the file is empty';
  const head = f.read(0, HDR + 144);
  if (head.length < HDR + 144) return `the file is ${f.size} bytes, too short for a meta page`;
  const psize = head.readUInt32LE(48);
  if (psize < 512 || psize > 65536 || (psize & (psize - 1)) !== 0) return `meta page 0 gives an impossible page size ${psize}`;
  if (f.size < 2 * psize) return `the file is ${f.size} bytes, shorter than its two meta pages`;
  const metas: Meta[] = [];
  for (const i of [0, 1]) {
    const m = readMeta(f, i, psize);
    if (typeof m === 'string') return m;
    metas.push(m);
  }
  const current = metas[0].txnid >= metas[1].txnid ? metas[0] : metas[1];
  return { current };
}

/** One tree page's header: why it is not a sane page of kind `want` at `pgno`, or undefined. */
function pageHeaderProblem(p: Buffer, pgno: number, psize: number, want: number): string | undefined {
  if (p.length < psize) return `page ${pgno} is cut off`;
  if (p.readBigUInt64LE(0) !== BigInt(pgno)) return `page ${pgno} says it is page ${p.readBigUInt64LE(0)}`;
  const flags = p.readUInt16LE(18);
  if (!(flags & want)) return `page ${pgno} is not a ${want === P_OVERFLOW ? 'overflow' : 'branch or leaf'} page (flags 0x${flags.toString(16)})`;
  if (want === P_OVERFLOW) return undefined;
  const lower = p.readUInt16LE(20);
  const upper = p.readUInt16LE(22);
  if (lower % 2 !== 0 || lower > upper || HDR + upper > psize) return `page ${pgno} has impossible bounds (lower ${lower}, upper ${upper})`;
  return undefined;
}

/**
 * Index files up to this size are walked page by page at every open (a few ms for a store of
 * a million chunks' worth of packs would be more: above it only the meta pages and roots are
 * checked at open, and fsck and verify walk every page).
 */
export const WALK_AT_OPEN_BYTES = 64 * 1024 * 1024;

/**
 * The open-time check: the whole page walk for an index up to WALK_AT_OPEN_BYTES, else the
 * meta pages and the pages the current one names as roots. Undefined when lmdb may open it.
 */
export function indexFileProblem(dir: string): string | undefined {
  const size = fileSize(path.join(dir, INDEX_FILE));
  if (size === 0) return undefined; // created, not yet initialised (see indexPageProblems)
  if (size !== undefined && size <= WALK_AT_OPEN_BYTES) return indexPageProblems(dir, 1)[0];
  return rootProblem(dir);
}

/** The bytes of the index file lmdb uses now (up to its current last page), or undefined when unreadable. */
export function indexUsedBytes(dir: string): { used: number; pageBytes: number } | undefined {
  let f: PageFile;
  try {
    f = PageFile.open(path.join(dir, INDEX_FILE));
  } catch {
    return undefined;
  }
  try {
    const m = readMetas(f);
    return typeof m === 'string' ? undefined : { used: (m.current.lastPg + 1) * m.current.psize, pageBytes: m.current.psize };
  } finally {
    f.close();
  }
}

function fileSize(file: string): number | undefined {
  try {
    const f = PageFile.open(file);
    try {
      return f.size;
    } finally {
      f.close();
    }
  } catch {
    return undefined;
  }
}

function rootProblem(dir: string): string | undefined {
  let f: PageFile;
  try {
    f = PageFile.open(path.join(dir, INDEX_FILE));
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : `cannot be read (${(e as Error).message})`;
  }
  try {
    const m = readMetas(f);
    if (typeof m === 'string') return m;
    // Only the current meta page's roots: pages of the older snapshot may since have been reused.
    const { roots, psize } = m.current;
    for (const root of roots) {
      if (root === undefined) continue;
      const problem = pageHeaderProblem(f.read(root * psize, psize), root, psize, P_BRANCH | P_LEAF);
      if (problem) return problem;
    }
    return undefined;
  } finally {
    f.close();
  }
}

/**
 * fsck's check: every page reachable from the current meta page (the free-page tree, the
 * main tree and every named database in it), with each node inside its page and each child,
 * overflow and sub-database page inside the file. Returns at most `limit` problems.
 */
export function indexPageProblems(dir: string, limit = 20): string[] {
  let f: PageFile;
  try {
    f = PageFile.open(path.join(dir, INDEX_FILE), { everyPage: true });
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? [] : [`cannot be read (${(e as Error).message})`];
  }
  const problems: string[] = [];
  try {
    // lmdb creates the file, then writes its meta pages: a process killed between the two leaves
    // it empty. That is an index not yet made (lmdb initialises it on the next open), not damage.
    if (f.size === 0) return [];
    const m = readMetas(f);
    if (typeof m === 'string') return [m];
    const { psize, lastPg } = m.current;
    const seen = new Set<number>();
    const inRange = (n: bigint): boolean => n >= 2n && n <= BigInt(lastPg);
    const walk = (pgno: number, depth: number, tree: string): void => {
      if (problems.length >= limit) return;
      if (depth > MAX_DEPTH) return void problems.push(`${tree}: deeper than ${MAX_DEPTH} levels at page ${pgno} (a loop?)`);
      if (seen.has(pgno)) return void problems.push(`${tree}: page ${pgno} is reached twice`);
      seen.add(pgno);
      const p = f.read(pgno * psize, psize);
      const bad = pageHeaderProblem(p, pgno, psize, P_BRANCH | P_LEAF);
      if (bad) return void problems.push(`${tree}: ${bad}`);
      const branch = (p.readUInt16LE(18) & P_BRANCH) !== 0;
      const lower = p.readUInt16LE(20);
      const upper = p.readUInt16LE(22);
      for (let i = 0; i < lower / 2; i++) {
        const at = HDR + p.readUInt16LE(HDR + 2 * i);
        if (at < HDR + upper || at + NODE > psize) return void problems.push(`${tree}: page ${pgno} node ${i} lies outside the page`);
        const lo = p.readUInt16LE(at);
        const hi = p.readUInt16LE(at + 2);
        const flags = p.readUInt16LE(at + 4);
        const ksize = p.readUInt16LE(at + 6);
        if (at + NODE + ksize > psize) return void problems.push(`${tree}: page ${pgno} node ${i}'s key runs past the page`);
        if (branch) {
          const child = BigInt(lo) | (BigInt(hi) << 16n) | (BigInt(flags) << 32n);
          if (!inRange(child)) return void problems.push(`${tree}: page ${pgno} points at page ${child}, outside pages 2..${lastPg}`);
          walk(Number(child), depth + 1, tree);
          continue;
        }
        const dsize = lo | (hi << 16);
        const data = at + NODE + ksize;
        if (flags & F_BIGDATA) {
          if (data + 8 > psize) return void problems.push(`${tree}: page ${pgno} node ${i} runs past the page`);
          const ov = p.readBigUInt64LE(data);
          const pages = Math.floor((HDR - 1 + dsize) / psize) + 1;
          if (!inRange(ov) || ov + BigInt(pages - 1) > BigInt(lastPg)) return void problems.push(`${tree}: page ${pgno} points at overflow page ${ov}, outside pages 2..${lastPg}`);
          const ovBad = pageHeaderProblem(f.read(Number(ov) * psize, psize), Number(ov), psize, P_OVERFLOW);
          if (ovBad) return void problems.push(`${tree}: ${ovBad}`);
          continue;
        }
        if (data + dsize > psize) return void problems.push(`${tree}: page ${pgno} node ${i}'s value runs past the page`);
        if (flags & F_DUPDATA) continue; // no mstore database uses duplicates; lmdb checks sub-pages itself
        if (flags & F_SUBDATA) {
          if (dsize < 48) return void problems.push(`${tree}: page ${pgno} node ${i} is a database record of ${dsize} bytes`);
          const name = p
            .subarray(at + NODE, at + NODE + ksize)
            .toString('latin1')
            .replace(/\0+$/, '')
            .replace(/[^\x20-\x7e]/g, '?');
          const root = p.readBigUInt64LE(data + 40);
          if (root === INVALID) continue;
          if (!inRange(root)) return void problems.push(`database '${name}': root page ${root} is outside pages 2..${lastPg}`);
          walk(Number(root), 0, `database '${name}'`);
        }
      }
    };
    const [free, main] = m.current.roots;
    if (free !== undefined) walk(free, 0, 'free-page tree');
    if (main !== undefined) walk(main, 0, 'main tree');
    return problems;
  } finally {
    f.close();
  }
}
