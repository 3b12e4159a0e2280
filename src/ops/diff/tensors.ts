/**
 * The tensor part of `mstore diff A B`: which tensors of the safetensors files (and sharded
 * checkpoints) two sides hold were added, removed, changed or left alone, and how many of B's
 * bytes changed.
 *
 * Only headers are read (8-byte length + JSON, through `Side.read`). Whether a tensor changed is
 * decided from chunk lists where it can be: in a file cut by mstore's plan (format §4.3) every
 * tensor is an exact run of chunks aligned to its start, so the same dtype, shape and chunk ids on
 * both sides mean the same bytes, and chunks whose ids differ are exactly the changed regions.
 * Where a tensor is not an exact run of chunks on either side (a file of at most
 * `singleChunkBytes`, stored as one chunk; a git blob; chunks cut with other piece sizes on the
 * two sides), both ranges are read and compared, 4 MiB window by 4 MiB window. A whole file with
 * the same content id on both sides needs neither.
 *
 * With `stats`, changed tensors of equal shape are decoded (F64, F32, F16, BF16, integer types
 * and BOOL; not F8/F6/F4/C64) and compared value by value, streaming ≤ 16 MiB reads per side.
 */
import path from 'node:path';
import type { Side, SideChunk, SideFile } from './sides.js';
import { MAX_HEADER_BYTES, parseSafetensorsHeader, type SafetensorsHeader } from '../../format/safetensors.js';
import { DECODERS, u16view, type Decoder } from '../../format/dtypes.js';
import { MstoreError } from '../../lib/errors.js';

export interface TensorChange {
  name: string;
  status: 'added' | 'removed' | 'changed' | 'unchanged';
  /** File (shard) that holds it on each side. */
  fileA?: string;
  fileB?: string;
  dtypeA?: string;
  dtypeB?: string;
  shapeA?: number[];
  shapeB?: number[];
  /** Tensor byte size on each side. */
  bytesA?: number;
  bytesB?: number;
  /** Bytes of B's tensor that are in changed chunks (0 for unchanged and removed; bytesB for added or a dtype/shape change). */
  changedBytes: number;
  /**
   * With stats, changed tensors of equal shape and decodable dtypes: ||B - A||₂ / ||A||₂ over the
   * decoded values. Omitted when ||A|| is 0 (the ratio has no finite value). Elements where
   * either side is not finite (NaN, ±Inf) are left out of both norms and of maxAbsDiff.
   */
  relNorm?: number;
  /** With stats: max |B - A| over the elements where both sides are finite. */
  maxAbsDiff?: number;
}

export interface TensorDiff {
  /** 'file' for a pair of single files at one path, 'sharded' for a checkpoint through a *.safetensors.index.json. */
  kind: 'file' | 'sharded';
  /** The path (file or index json) compared. */
  path: string;
  counts: { added: number; removed: number; changed: number; unchanged: number };
  /** Sum of changedBytes. */
  bytesChanged: number;
  /** Bytes of all of B's tensors. */
  bytesTotalB: number;
  /** Sorted by name. */
  tensors: TensorChange[];
}

export interface DiffTensorsOptions {
  /** Only these paths: files, index files or directory prefixes (a shard selects its checkpoint). */
  paths?: string[];
  /** Decode changed tensors of equal shape and report relNorm and maxAbsDiff. */
  stats?: boolean;
}

const MiB = 1024 * 1024;
/** Granularity of changedBytes when bytes are compared directly (the store's piece size). */
const WINDOW = 4 * MiB;
/** Most bytes read from one side at a time. */
const READ_MAX = 16 * MiB;
/** Files up to this size are read whole, once, when their tensors must be compared by bytes. */
const WHOLE_FILE_MAX = 16 * MiB;
/** Most bytes of such whole-file copies kept at once (oldest dropped first). */
const FILE_CACHE_MAX = 64 * MiB;
const INDEX_SUFFIX = '.safetensors.index.json';

/** A tensor as one side holds it. */
interface Located {
  name: string;
  file: string;
  dtype: string;
  shape: number[];
  /** Absolute byte range in `file`. */
  start: number;
  end: number;
}

/** One side of one comparison unit (a file or a sharded checkpoint). */
interface Holding {
  tensors: Map<string, Located>;
}

/**
 * Compares the safetensors files and sharded checkpoints of two sides; one TensorDiff per plain
 * `*.safetensors` path on either side and per `*.safetensors.index.json` on either side, sorted
 * by path (unchanged ones included: callers filter).
 *
 * - A checkpoint's shards are the files its index lists (`weight_map` values, relative to the
 *   index's directory) on either side; they are read on both sides, a missing one holding no
 *   tensors, and are not diffed as plain files. Tensors are matched by name across shards. An
 *   index that is not a JSON object with a `weight_map` lists nothing on that side.
 * - A file that is not valid safetensors (format §4.2) on a side where it exists, or a checkpoint
 *   with such a shard, gets no tensor diff (the file diff shows it). A symlink counts as absent.
 * - `changedBytes` comes from chunk ids where the tensor is an exact run of chunks with the same
 *   boundaries on both sides; otherwise from reading both (per 4 MiB window from its start).
 */
export async function diffTensors(a: Side, b: Side, opts: DiffTensorsOptions = {}): Promise<TensorDiff[]> {
  const [filesA, filesB] = await Promise.all([a.files(), b.files()]);
  const ctx = new Ctx(a, b, filesA, filesB, opts.stats === true);
  const wanted = pathFilter(opts.paths);

  // Sharded checkpoints: every index json on either side; their shards are not diffed alone.
  const indexPaths = new Set<string>();
  for (const m of [filesA, filesB]) for (const [p, f] of m) if (p.endsWith(INDEX_SUFFIX) && f.kind !== 'link') indexPaths.add(p);
  const claimed = new Set<string>();
  const checkpoints: { index: string; shards: string[] }[] = [];
  for (const index of [...indexPaths].sort()) {
    const shards = new Set([...((await readIndex(a, filesA, index)) ?? []), ...((await readIndex(b, filesB, index)) ?? [])]);
    for (const s of shards) claimed.add(s);
    checkpoints.push({ index, shards: [...shards].sort() });
  }

  const out: TensorDiff[] = [];
  for (const { index, shards } of checkpoints) {
    if (!wanted(index) && !shards.some(wanted)) continue;
    const hA = await ctx.holdShards(a, filesA, shards);
    const hB = await ctx.holdShards(b, filesB, shards);
    if (hA && hB) out.push(await ctx.compare('sharded', index, hA, hB));
    ctx.dropFileCache();
  }

  const plain = new Set<string>();
  for (const m of [filesA, filesB]) for (const p of m.keys()) if (p.endsWith('.safetensors') && !claimed.has(p) && wanted(p)) plain.add(p);
  for (const p of [...plain].sort()) {
    if (![filesA.get(p), filesB.get(p)].some((f) => f && f.kind !== 'link')) continue;
    const hA = await ctx.holdShards(a, filesA, [p]);
    const hB = await ctx.holdShards(b, filesB, [p]);
    if (hA && hB) out.push(await ctx.compare('file', p, hA, hB));
    ctx.dropFileCache();
  }
  out.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
  return out;
}

/** `paths` as a predicate: exact paths or directory prefixes ('' or '.' selects everything). */
function pathFilter(paths: string[] | undefined): (p: string) => boolean {
  if (!paths) return () => true;
  const norm = paths.map((p) => {
    const n = path.posix.normalize(p.replace(/\\/g, '/')).replace(/^\.\/+/, '').replace(/\/+$/, '');
    return n === '.' ? '' : n;
  });
  return (p) => norm.some((n) => n === '' || p === n || p.startsWith(`${n}/`));
}

/**
 * The shard paths (relative to the store root) an index names, or undefined when the side has no
 * such index, it is a link, or it is not a JSON object with a `weight_map` of strings. Entries
 * that would leave the store (absolute, `..`) are ignored.
 */
async function readIndex(side: Side, files: Map<string, SideFile>, index: string): Promise<string[] | undefined> {
  const f = files.get(index);
  if (!f || f.kind === 'link') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse((await side.readAll(index)).toString('utf8'));
  } catch (e) {
    if (e instanceof MstoreError) throw e;
    return undefined;
  }
  const map = parsed && typeof parsed === 'object' ? (parsed as { weight_map?: unknown }).weight_map : undefined;
  if (!map || typeof map !== 'object' || Array.isArray(map)) return undefined;
  const dir = path.posix.dirname(index);
  const shards = new Set<string>();
  for (const v of Object.values(map)) {
    if (typeof v !== 'string' || v.startsWith('/')) continue;
    const p = path.posix.normalize(dir === '.' ? v : `${dir}/${v}`);
    if (p === '..' || p.startsWith('../') || p === '.') continue;
    shards.add(p);
  }
  return [...shards].sort();
}

/** Reads and validates a header; undefined when the file is not valid safetensors. */
async function readHeader(side: Side, file: string, size: number): Promise<SafetensorsHeader | undefined> {
  if (size < 8) return undefined;
  const prefix = await side.read(file, 0, 8);
  if (prefix.length !== 8) throw changedWhileRead(side, file);
  const n = Number(prefix.readBigUInt64LE(0));
  if (n > MAX_HEADER_BYTES || 8 + n > size) return undefined;
  const json = await side.read(file, 8, n);
  if (json.length !== n) throw changedWhileRead(side, file);
  try {
    return parseSafetensorsHeader(prefix, json, size);
  } catch {
    return undefined;
  }
}

function changedWhileRead(side: Side, file: string): MstoreError {
  return new MstoreError('EBADINPUT', `${side.label}:${file} changed while it was read`);
}

const sameShape = (x: number[], y: number[]): boolean => x.length === y.length && x.every((d, i) => d === y[i]);

class Ctx {
  private readonly chunkCache = new Map<string, SideChunk[] | undefined>();
  private readonly fileCache = new Map<string, Buffer>();
  private cachedBytes = 0;

  constructor(
    readonly a: Side,
    readonly b: Side,
    readonly filesA: Map<string, SideFile>,
    readonly filesB: Map<string, SideFile>,
    readonly stats: boolean,
  ) {}

  /**
   * The tensors of these files on one side (missing files and links hold none); undefined when
   * one of them is not valid safetensors. A name in two files: the later path wins.
   */
  async holdShards(side: Side, files: Map<string, SideFile>, shards: string[]): Promise<Holding | undefined> {
    const tensors = new Map<string, Located>();
    for (const file of shards) {
      const f = files.get(file);
      if (!f || f.kind === 'link') continue;
      const h = await readHeader(side, file, f.size);
      if (!h) return undefined;
      for (const t of h.tensors) {
        tensors.set(t.name, { name: t.name, file, dtype: t.dtype, shape: t.shape, start: h.dataStart + t.begin, end: h.dataStart + t.end });
      }
    }
    return { tensors };
  }

  dropFileCache(): void {
    this.fileCache.clear();
    this.cachedBytes = 0;
    this.chunkCache.clear();
  }

  async compare(kind: TensorDiff['kind'], where: string, hA: Holding, hB: Holding): Promise<TensorDiff> {
    const names = [...new Set([...hA.tensors.keys(), ...hB.tensors.keys()])].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    const counts = { added: 0, removed: 0, changed: 0, unchanged: 0 };
    let bytesChanged = 0;
    let bytesTotalB = 0;
    const byName = new Map<string, TensorChange>();
    // Compared in B's file order (then A's): a side rebuilt from a recipe is read front to back
    // once (content-reader.ts, recipeRange), not from its start for every tensor. Listed by name.
    const at = (n: string): [string, number] => {
      const t = hB.tensors.get(n) ?? hA.tensors.get(n)!;
      return [t.file, t.start];
    };
    const order = [...names].sort((x, y) => {
      const [fx, sx] = at(x);
      const [fy, sy] = at(y);
      return fx < fy ? -1 : fx > fy ? 1 : sx - sy;
    });
    for (const name of order) {
      const ta = hA.tensors.get(name);
      const tb = hB.tensors.get(name);
      const c = await this.tensor(name, ta, tb);
      counts[c.status]++;
      bytesChanged += c.changedBytes;
      if (tb) bytesTotalB += tb.end - tb.start;
      byName.set(name, c);
    }
    return { kind, path: where, counts, bytesChanged, bytesTotalB, tensors: names.map((n) => byName.get(n)!) };
  }

  private async tensor(name: string, ta: Located | undefined, tb: Located | undefined): Promise<TensorChange> {
    // Keys in the order of the interface (docs/diff.md: the JSON field order is part of it).
    const c: TensorChange = {
      name,
      status: 'unchanged',
      ...(ta && { fileA: ta.file }),
      ...(tb && { fileB: tb.file }),
      ...(ta && { dtypeA: ta.dtype }),
      ...(tb && { dtypeB: tb.dtype }),
      ...(ta && { shapeA: ta.shape }),
      ...(tb && { shapeB: tb.shape }),
      ...(ta && { bytesA: ta.end - ta.start }),
      ...(tb && { bytesB: tb.end - tb.start }),
      changedBytes: 0,
    };
    if (!ta || !tb) {
      c.status = ta ? 'removed' : 'added';
      c.changedBytes = tb ? tb.end - tb.start : 0;
      return c;
    }
    const shapeEq = sameShape(ta.shape, tb.shape);
    if (ta.dtype !== tb.dtype || !shapeEq) {
      c.status = 'changed';
      c.changedBytes = tb.end - tb.start;
      if (this.stats && shapeEq) await this.statsPass(c, ta, tb, false);
      return c;
    }
    // Same dtype and shape: same byte length.
    const oidA = this.filesA.get(ta.file)!.oid;
    const oidB = this.filesB.get(tb.file)!.oid;
    if (oidA === oidB && ta.start === tb.start) return c; // same content, same place
    if (ta.end === ta.start) return c;
    const changed = await this.byChunks(ta, tb);
    if (changed !== undefined) {
      c.changedBytes = changed;
      if (changed > 0) {
        c.status = 'changed';
        if (this.stats) await this.statsPass(c, ta, tb, false);
      }
      return c;
    }
    // Not decidable from chunks: read both and compare (and take stats in the same pass).
    const changedBytes = this.stats ? await this.statsPass(c, ta, tb, true) : await this.compareBytes(ta, tb);
    c.changedBytes = changedBytes;
    if (changedBytes > 0) c.status = 'changed';
    else {
      delete c.relNorm;
      delete c.maxAbsDiff;
    }
    return c;
  }

  private async chunksOf(side: Side, file: string): Promise<SideChunk[] | undefined> {
    const key = `${side === this.a ? 'a' : 'b'}:${file}`;
    if (!this.chunkCache.has(key)) this.chunkCache.set(key, await side.chunks(file));
    return this.chunkCache.get(key);
  }

  /**
   * Changed bytes of B's tensor from the chunk lists, or undefined when the tensor is not an
   * exact run of chunks on both sides with the same boundaries (relative to its start).
   */
  private async byChunks(ta: Located, tb: Located): Promise<number | undefined> {
    const ca = await this.chunksOf(this.a, ta.file);
    const ra = ca && run(ca, ta.start, ta.end);
    if (!ra) return undefined; // before B's list: a workspace side hashes its file for one
    const cb = await this.chunksOf(this.b, tb.file);
    const rb = cb && run(cb, tb.start, tb.end);
    if (!rb || ra.length !== rb.length) return undefined;
    let changed = 0;
    for (let i = 0; i < rb.length; i++) {
      const x = ra[i];
      const y = rb[i];
      if (x.offset - ta.start !== y.offset - tb.start || x.length !== y.length) return undefined;
      if (x.id !== y.id) changed += y.length;
    }
    return changed;
  }

  /** Reads [start, start + len) of a file, through a whole-file copy for small files. */
  private async read(side: Side, file: string, start: number, len: number): Promise<Buffer> {
    const size = (side === this.a ? this.filesA : this.filesB).get(file)!.size;
    let buf: Buffer;
    if (size <= WHOLE_FILE_MAX) {
      const key = `${side === this.a ? 'a' : 'b'}:${file}`;
      let whole = this.fileCache.get(key);
      if (!whole) {
        whole = await side.readAll(file);
        this.fileCache.set(key, whole);
        this.cachedBytes += whole.length;
        for (const [k, v] of this.fileCache) {
          if (this.cachedBytes <= FILE_CACHE_MAX || k === key) break;
          this.fileCache.delete(k);
          this.cachedBytes -= v.length;
        }
      }
      buf = whole.subarray(start, start + len);
    } else buf = await side.read(file, start, len);
    if (buf.length !== len) throw changedWhileRead(side, file);
    return buf;
  }

  /** Changed bytes of B by direct comparison, in WINDOW pieces from the tensor start. */
  private async compareBytes(ta: Located, tb: Located): Promise<number> {
    const total = tb.end - tb.start;
    let changed = 0;
    for (let off = 0; off < total; off += READ_MAX) {
      const len = Math.min(READ_MAX, total - off);
      const [x, y] = await Promise.all([this.read(this.a, ta.file, ta.start + off, len), this.read(this.b, tb.file, tb.start + off, len)]);
      changed += windowDiff(x, y);
    }
    return changed;
  }

  /**
   * Decodes both tensors (equal shapes) and sets relNorm / maxAbsDiff on `c`. With `countBytes`
   * (same dtype), also returns B's changed bytes counted per WINDOW; otherwise returns 0.
   */
  private async statsPass(c: TensorChange, ta: Located, tb: Located, countBytes: boolean): Promise<number> {
    const da = DECODERS[ta.dtype];
    const db = DECODERS[tb.dtype];
    if (!da || !db) return countBytes ? this.compareBytes(ta, tb) : 0;
    const n = ta.shape.reduce((p, d) => p * d, 1);
    // Elements per read: ≤ READ_MAX bytes on the wider side, a multiple of WINDOW on both where possible.
    const per = Math.floor(READ_MAX / Math.max(da.bytes, db.bytes));
    const acc = new StatsAcc();
    let changed = 0;
    for (let e = 0; e < n; e += per) {
      const k = Math.min(per, n - e);
      const [x, y] = await Promise.all([
        this.read(this.a, ta.file, ta.start + e * da.bytes, k * da.bytes),
        this.read(this.b, tb.file, tb.start + e * db.bytes, k * db.bytes),
      ]);
      if (countBytes) changed += windowDiff(x, y);
      acc.add(da, x, db, y, k);
    }
    const r = acc.result();
    if (r.relNorm !== undefined) c.relNorm = r.relNorm;
    if (r.maxAbsDiff !== undefined) c.maxAbsDiff = r.maxAbsDiff;
    return changed;
  }
}

/** The chunks that exactly cover [start, end), or undefined when a boundary falls inside a chunk. */
function run(chunks: SideChunk[], start: number, end: number): SideChunk[] | undefined {
  let lo = 0;
  let hi = chunks.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (chunks[mid].offset < start) lo = mid + 1;
    else hi = mid;
  }
  if (lo >= chunks.length || chunks[lo].offset !== start) return undefined;
  const out: SideChunk[] = [];
  let pos = start;
  for (let i = lo; i < chunks.length && pos < end; i++) {
    if (chunks[i].offset !== pos) return undefined;
    out.push(chunks[i]);
    pos += chunks[i].length;
  }
  return pos === end ? out : undefined;
}

/** Bytes of `y` in WINDOW pieces that differ from `x` (same lengths; windows from the buffers' start). */
function windowDiff(x: Buffer, y: Buffer): number {
  let changed = 0;
  for (let o = 0; o < y.length; o += WINDOW) {
    const e = Math.min(o + WINDOW, y.length);
    if (Buffer.compare(x.subarray(o, e), y.subarray(o, e)) !== 0) changed += e - o;
  }
  return changed;
}

// ------------------------------------------------------------------ stats

const STEP = 65536;

/**
 * Running sums for relNorm and maxAbsDiff. Pairs where either value is not finite (NaN, ±Inf)
 * are left out: one infinity would make the norms meaningless.
 */
class StatsAcc {
  private sumA = 0;
  private sumD = 0;
  private max = 0;
  private xa: Float64Array | undefined;
  private xb: Float64Array | undefined;

  add(da: Decoder, x: Buffer, db: Decoder, y: Buffer, count: number): void {
    // The common case (same 16-bit float type on both sides): decoded in the loop.
    const ua = da.table && db.table ? u16view(x) : undefined;
    const ub = ua && u16view(y);
    if (ua && ub) {
      this.tables(da.table!, ua, db.table!, ub, count);
      return;
    }
    const ra = da.prepare(x);
    const rb = db.prepare(y);
    const xa = (this.xa ??= new Float64Array(STEP));
    const xb = (this.xb ??= new Float64Array(STEP));
    for (let e = 0; e < count; e += STEP) {
      const k = Math.min(STEP, count - e);
      ra(e, k, xa);
      rb(e, k, xb);
      this.values(xa, xb, k);
    }
  }

  private tables(ta: Float64Array, ua: Uint16Array, tb: Float64Array, ub: Uint16Array, count: number): void {
    let sa = 0;
    let sd = 0;
    let m = this.max;
    for (let i = 0; i < count; i++) {
      const va = ta[ua[i]];
      const vb = tb[ub[i]];
      if (va - va + (vb - vb) !== 0) continue; // NaN unless both are finite
      const d = vb - va;
      sa += va * va;
      sd += d * d;
      m = Math.max(m, Math.abs(d));
    }
    this.sumA += sa;
    this.sumD += sd;
    this.max = m;
  }

  private values(xa: Float64Array, xb: Float64Array, count: number): void {
    let sa = 0;
    let sd = 0;
    let m = this.max;
    for (let i = 0; i < count; i++) {
      const va = xa[i];
      const vb = xb[i];
      if (va - va + (vb - vb) !== 0) continue;
      const d = vb - va;
      sa += va * va;
      sd += d * d;
      m = Math.max(m, Math.abs(d));
    }
    this.sumA += sa;
    this.sumD += sd;
    this.max = m;
  }

  result(): { relNorm?: number; maxAbsDiff?: number } {
    const normA = Math.sqrt(this.sumA);
    const rel = normA > 0 ? Math.sqrt(this.sumD) / normA : undefined;
    return { relNorm: rel !== undefined && Number.isFinite(rel) ? rel : undefined, maxAbsDiff: this.max };
  }
}
