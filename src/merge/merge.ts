/**
 * mergeLora: the built-in CPU merge worker. Reads the base model tensor by tensor (in blocks
 * of rows, so memory is bounded by a few blocks plus the adapter's factors for one tensor, not
 * by the model), applies the adapter plan, and writes safetensors files with the base's header
 * bytes (tensor names, order, shapes, dtypes, `__metadata__`), the base's sharding and index,
 * and the base directory's other files. docs/merge.md is the contract.
 */
import { copyFile, lstat, mkdir, open, readdir, readlink, rm, stat, symlink, writeFile, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MstoreError } from '../lib/errors.js';
import { writeInPieces } from '../lib/fsutil.js';
import { openBaseModel, type BaseModel } from './base-model.js';
import { isKohyaKey, planKohya } from './kohya.js';
import { MERGE_KERNEL, type RowJob, type RowResult } from './kernel.js';
import { planPeft } from './peft.js';
import { matrixShape, type AdapterPlan, type TensorOp } from './plan.js';
import { KernelPool } from './pool.js';
import { DTYPE_BYTES, elements, floatDtype, openSafetensors, readStFile, readTensorF32, type StFile, type TensorRef } from './tensors.js';
import { DirFiles, type ByteSource, type ModelFiles, type WeightOut } from './source.js';

export interface MergeProgress {
  /** Output bytes written so far, of `total`. */
  done: number;
  total: number;
  tensor?: string;
}

export interface MergeOptions {
  /** Base model directory (one safetensors file, or shards + model.safetensors.index.json). */
  base: string;
  /** PEFT adapter directory (adapter_config.json + adapter_model.safetensors), or a kohya LoRA file / directory. */
  adapter: string;
  /** Output directory: created; must not exist or be empty. */
  out: string;
  /** Worker threads for the arithmetic (default: every core); 0 computes on the calling thread. */
  threads?: number;
  /** Target size of one block of rows (default 1 MiB). */
  blockBytes?: number;
  /** false: the plain JS kernel instead of WebAssembly SIMD; the same bits (test/merge-golden.test.ts). */
  simd?: boolean;
  onProgress?: (p: MergeProgress) => void;
}

export interface MergedTensor {
  target: string;
  keys: string[];
  /** lora, dora, embedding, replace (modules_to_save / saved layer), bias (lora_bias), replace+lora. */
  kind: string;
  rank?: number;
  alpha?: number;
  scale?: number;
}

export interface MergeResult {
  /** The kernel version whose arithmetic wrote the weights (MERGE_KERNEL, docs/merge.md). */
  kernel: string;
  format: 'peft' | 'kohya';
  adapterFiles: string[];
  /** Weight files written (base names, in the output directory). */
  weightFiles: string[];
  index?: string;
  /** Other files copied from the base directory (relative paths). */
  copied: string[];
  /** Files of the base directory not copied: stale weights in other formats. */
  skipped: string[];
  /** Changes made to config.json, as lines. */
  configChanges: string[];
  tensors: number;
  merged: MergedTensor[];
  bytes: number;
  seconds: number;
  threads: number;
}

const STALE_WEIGHTS = /^(pytorch_model.*\.bin|pytorch_model\.bin\.index\.json|tf_model\.h5|flax_model\.msgpack|.*\.(pt|pth|ckpt|gguf))$/;
const EMBED = /(^|\.)(embed_tokens|wte|word_embeddings|embed_in)\.weight$/;
const COPY_PIECE = 16 * 1024 * 1024;

/** The adapter at `adapter`: a PEFT or kohya directory (planAdapterIn), or a kohya LoRA file. */
export async function planAdapter(adapter: string, base: BaseModel, pool: KernelPool): Promise<AdapterPlan> {
  const st = await stat(adapter).catch(() => undefined);
  if (!st) throw new MstoreError('EBADINPUT', `adapter ${adapter} does not exist`);
  if (st.isDirectory()) return planAdapterIn(new DirFiles(adapter), base, pool);
  return planKohyaFile(await openSafetensors(adapter), base, pool);
}

/** The adapter in `files`: PEFT (adapter_config.json), or a kohya LoRA, the directory's one .safetensors file. */
export async function planAdapterIn(files: ModelFiles, base: BaseModel, pool: KernelPool): Promise<AdapterPlan> {
  const names = (await files.list()).map((e) => e.path).filter((p) => !p.includes('/'));
  if (names.includes('adapter_config.json')) return planPeft(files, base);
  const sts = names.filter((n) => n.endsWith('.safetensors'));
  if (sts.length !== 1) {
    throw new MstoreError('EBADINPUT', `adapter directory ${files.name} has no adapter_config.json and ${sts.length} .safetensors files (a kohya LoRA is one file)`);
  }
  return planKohyaFile(await readStFile(await files.source(sts[0]), sts[0]), base, pool);
}

async function planKohyaFile(head: StFile, base: BaseModel, pool: KernelPool): Promise<AdapterPlan> {
  if (!head.header.tensors.length || !head.header.tensors.every((t) => isKohyaKey(t.name))) {
    throw new MstoreError('EBADINPUT', `${head.path} is not a kohya LoRA (lora_unet_/lora_te_ keys); a PEFT adapter is a directory with adapter_config.json`);
  }
  return planKohya(head, base, pool.local);
}

function describe(op: TensorOp): MergedTensor {
  const d = op.delta;
  const base = { target: op.target, keys: op.keys };
  if (!d) return { ...base, kind: 'replace' };
  if (d.kind === 'vector') return { ...base, kind: 'bias', scale: d.scale };
  const kind = d.magnitude ? 'dora' : /lora_embedding_/.test(d.down.info.name) ? 'embedding' : 'lora';
  return { ...base, kind: op.replace ? `replace+${kind}` : kind, rank: d.rank, alpha: d.alpha, scale: d.scale };
}

/** A new file written front to back (the merge writes each weight file in order). */
function fileOut(fh: FileHandle): WeightOut {
  let pos = 0;
  return {
    async write(buf) {
      await writeInPieces(fh, buf, pos);
      pos += buf.length;
    },
  };
}

/** Shared, reusable block buffers (two in, two out), grown on demand. */
class Blocks {
  private bufs: SharedArrayBuffer[] = [];
  get(slot: number, bytes: number): Uint8Array {
    const need = Math.max(16, Math.ceil(bytes / 16) * 16);
    if (!this.bufs[slot] || this.bufs[slot].byteLength < need) this.bufs[slot] = new SharedArrayBuffer(need);
    return new Uint8Array(this.bufs[slot], 0, bytes);
  }
}

function shared(a: Float32Array): Float32Array {
  const s = new Float32Array(new SharedArrayBuffer(Math.max(4, a.byteLength)), 0, a.length);
  s.set(a);
  return s;
}

interface Factors {
  P: Float32Array;
  Q: Float32Array;
  /** Names this Q to the kernel threads (RowJob.qKey). */
  qKey: number;
  r: number;
  scale: number;
  mag: Float32Array | null;
  roundDelta?: boolean;
}

/** A new Q's key: unique in this process (each factors() call makes a new Q). */
let nextQKey = 1;

/** The Δ factors of an op, as the kernel wants them: P [rows × r], Q [r × cols]. */
async function factors(op: TensorOp, rows: number, cols: number, pool: KernelPool): Promise<Factors | undefined> {
  const d = op.delta;
  if (!d) return undefined;
  if (d.kind === 'vector') {
    return { P: shared(await readTensorF32(d.vector, pool.local)), Q: shared(Float32Array.of(1)), qKey: nextQKey++, r: 1, scale: d.scale, mag: null };
  }
  const up = await readTensorF32(d.up, pool.local);
  const down = await readTensorF32(d.down, pool.local);
  const r = d.rank;
  const mag = d.magnitude ? shared(await readTensorF32(d.magnitude, pool.local)) : null;
  if (!d.transpose) return { P: shared(up), Q: shared(down), qKey: nextQKey++, r, scale: d.scale, mag, roundDelta: d.roundDelta };
  // Δ = (up @ down)ᵀ: P[i, k] = down[k, i], Q[k, j] = up[j, k].
  const P = new Float32Array(new SharedArrayBuffer(rows * r * 4));
  const Q = new Float32Array(new SharedArrayBuffer(r * cols * 4));
  for (let k = 0; k < r; k++) for (let i = 0; i < rows; i++) P[i * r + k] = down[k * rows + i];
  for (let j = 0; j < cols; j++) for (let k = 0; k < r; k++) Q[k * cols + j] = up[j * r + k];
  return { P, Q, qKey: nextQKey++, r, scale: d.scale, mag, roundDelta: d.roundDelta };
}

interface WriteCtx {
  pool: KernelPool;
  /** Where a file's bytes are read: its own source, or the one the caller gave for the file being written. */
  sourceOf: (file: StFile) => ByteSource;
  blocks: Blocks;
  blockBytes: number;
  onBytes: (n: number, tensor: string) => void;
}

/** The rows and columns an op's kernel jobs see: a vector (bias) delta is one column. */
function opShape(op: TensorOp, baseRef: TensorRef): { rows: number; cols: number } {
  return op.delta?.kind === 'vector' ? { rows: elements(baseRef.info.shape), cols: 1 } : matrixShape(baseRef.info.shape);
}

/** An op's factors (read from the adapter), being read: started one tensor ahead (writeWeightFile). */
function factorsAhead(op: TensorOp, baseRef: TensorRef, pool: KernelPool): Promise<Factors | undefined> {
  const { rows, cols } = opShape(op, baseRef);
  const p = factors(op, rows, cols, pool);
  p.catch(() => undefined); // thrown where it is awaited, if it is
  return p;
}

/** A merged value that is NaN or ±Inf: what the arithmetic made of its inputs, not damage to them. */
export class NonFiniteMerge extends MstoreError {}

/** One merged tensor, block by block: read the next block and write the last while the threads compute. */
async function mergeTensor(op: TensorOp, baseRef: TensorRef, f: Factors | undefined, out: WeightOut, ctx: WriteCtx): Promise<void> {
  const src = op.replace ?? baseRef;
  const srcDtype = floatDtype(src);
  const dstDtype = floatDtype(baseRef);
  const { rows, cols } = opShape(op, baseRef);
  const srcRow = cols * DTYPE_BYTES[srcDtype];
  const dstRow = cols * DTYPE_BYTES[dstDtype];
  const per = Math.max(1, Math.floor(ctx.blockBytes / Math.max(1, srcRow, dstRow)));
  const nBlocks = Math.max(1, Math.ceil(rows / per));
  const inPos = src.file.header.dataStart + src.info.begin;
  /** Block `b` read ahead; its failure is handled where it is awaited, never left unhandled meanwhile. */
  const read = (b: number): Promise<Uint8Array> => {
    const r0 = b * per;
    const n = Math.min(rows, r0 + per) - r0;
    const buf = ctx.blocks.get(b % 2, n * srcRow);
    const p = ctx.sourceOf(src.file).read(buf, inPos + r0 * srcRow).then(
      () => buf,
      (e: Error) => {
        throw e instanceof MstoreError && e.code === 'EBADINPUT' ? new MstoreError('EBADINPUT', `${e.message}, in tensor ${src.info.name}`) : e;
      },
    );
    p.catch(() => undefined);
    return p;
  };
  /** Block `b`'s rows posted to the threads, from its input, into its output buffer. */
  const compute = (b: number, input: Uint8Array): { dst: Uint8Array; result: Promise<RowResult> } => {
    const r0 = b * per;
    const n = Math.min(rows, r0 + per) - r0;
    const dst = ctx.blocks.get(2 + (b % 2), n * dstRow);
    const job: RowJob = {
      src: input,
      srcDtype,
      dst,
      dstDtype,
      rows: n,
      cols,
      r: f?.r ?? 0,
      P: f?.P ?? null,
      Q: f?.Q ?? null,
      qKey: f?.qKey,
      pRow0: r0,
      scale: f?.scale ?? 1,
      mag: f?.mag ?? null,
      roundDelta: !!f?.roundDelta,
    };
    const result = ctx.pool.run(job);
    result.catch(() => undefined); // handled where it is awaited
    return { dst, result };
  };
  // Three stages in flight: block b+1 computing, block b being written, block b+2 being read.
  // The next block is posted as soon as the last one is done, before its write starts: the
  // threads do not wait on this thread's copy of each output block.
  let nextRead: Promise<Uint8Array> | undefined = read(0);
  let computing: { dst: Uint8Array; result: Promise<RowResult> } | undefined;
  let lastWrite: Promise<void> | undefined;
  try {
    computing = compute(0, await nextRead);
    nextRead = nBlocks > 1 ? read(1) : undefined;
    for (let b = 0; b < nBlocks; b++) {
      const res = await computing!.result;
      const { dst } = computing!;
      if (res.bad > 0) {
        const r0 = b * per;
        const n = Math.min(rows, r0 + per) - r0;
        const at = r0 * cols + res.firstBad;
        throw new NonFiniteMerge(
          'ECORRUPT',
          `merged tensor ${op.target} has NaN/Inf values (${res.bad} in rows ${r0}-${r0 + n - 1}, first at element ${at}; from ${op.keys.join(', ')})`,
        );
      }
      computing = undefined;
      if (b + 1 < nBlocks) {
        const input = await nextRead!;
        // Block b+1's output buffer is block b-1's: its write must be done with it.
        if (lastWrite) await lastWrite;
        lastWrite = undefined;
        computing = compute(b + 1, input);
        // Block b+2 reads into block b's input buffer, which the threads are done with.
        nextRead = b + 2 < nBlocks ? read(b + 2) : undefined;
      }
      // In order: block b-1's write finished above (or below, for the last block).
      if (lastWrite) await lastWrite;
      lastWrite = out.write(dst).then(() => ctx.onBytes(dst.length, op.target));
      lastWrite.catch(() => undefined); // handled where it is awaited
    }
    if (lastWrite) await lastWrite;
  } catch (e) {
    // A failure (a damaged chunk in a store, a failed write) must not leave a write, a read or
    // a computation in flight into the block buffers, or a rejection nobody awaits, behind it.
    await Promise.allSettled([lastWrite, nextRead, computing?.result]);
    throw e;
  }
}

async function copyRange(src: ByteSource, out: WeightOut, inPos: number, length: number, buf: Uint8Array, onBytes: (n: number) => void): Promise<void> {
  for (let off = 0; off < length; off += buf.length) {
    const piece = buf.subarray(0, Math.min(buf.length, length - off));
    await src.read(piece, inPos + off);
    await out.write(piece);
    onBytes(piece.length);
  }
}

/**
 * A merged weight file's first bytes, the base file's header (its JSON padded with spaces to a
 * multiple of 8), and its size: the merge changes values, never names, dtypes, shapes or offsets.
 */
export function mergedHead(file: StFile): { head: Buffer; size: number } {
  const n = file.headerJson.length;
  const padded = n + ((8 - (n % 8)) % 8);
  const head = Buffer.alloc(8 + padded, 0x20);
  head.writeBigUInt64LE(BigInt(padded), 0);
  file.headerJson.copy(head, 8);
  return { head, size: head.length + (file.size - file.header.dataStart) };
}

/**
 * One merged weight file, front to back into `out`: the base file's header (mergedHead), then
 * its tensors in data order (the header's offsets are contiguous: format/safetensors.ts), each
 * merged or copied.
 */
async function writeWeightFile(file: StFile, out: WeightOut, plan: AdapterPlan, base: BaseModel, ctx: WriteCtx): Promise<void> {
  const { head } = mergedHead(file);
  await out.write(head);
  ctx.onBytes(head.length, '');
  const buf = new Uint8Array(COPY_PIECE);
  // The next merged tensor's factors are read while this one merges: between tensors, the
  // threads would otherwise wait for the adapter's reads (a model has hundreds of small tensors).
  const merged = file.header.tensors.filter((info) => plan.ops.has(info.name));
  const ahead = (m: number): { m: number; f: Promise<Factors | undefined> } | undefined =>
    m < merged.length ? { m, f: factorsAhead(plan.ops.get(merged[m].name)!, base.tensors.get(merged[m].name)!, ctx.pool) } : undefined;
  let next = ahead(0);
  try {
    for (const info of file.header.tensors) {
      const op = plan.ops.get(info.name);
      const ref = base.tensors.get(info.name)!;
      if (op) {
        const f = await next!.f;
        next = ahead(next!.m + 1);
        await mergeTensor(op, ref, f, out, ctx);
      } else await copyRange(ctx.sourceOf(file), out, file.header.dataStart + info.begin, info.end - info.begin, buf, (b) => ctx.onBytes(b, info.name));
    }
  } finally {
    // A failure leaves no adapter read in flight behind it.
    await next?.f.catch(() => undefined);
  }
}

/**
 * The kernel's threads and block buffers for merging weight files, wherever their bytes come
 * from and go to: `mergeLora` writes files with it, and a caller holding other sources (a
 * store's content) and another destination (a stream) uses it the same way. Close it after.
 */
export class WeightMerger {
  readonly pool: KernelPool;
  private readonly blockBytes: number;

  constructor(opts: { threads: number; simd?: boolean; blockBytes?: number }) {
    if (os.endianness() !== 'LE') throw new MstoreError('EBADINPUT', 'the merge worker needs a little-endian machine (safetensors is little-endian)');
    this.pool = new KernelPool(opts.threads, { simd: opts.simd });
    this.blockBytes = opts.blockBytes ?? 1024 * 1024;
  }

  /**
   * `file` (one of `base`'s weight files) merged with `plan`, front to back into `out`; `onBytes`
   * counts what was written. Each call has block buffers of its own: writes may run at once (two
   * files a reader rebuilds, one paused while the other runs) on the same kernel threads.
   * `source`, when given, is where `file`'s own bytes are read instead of `file.source`: the
   * same bytes read another way (a store's reader that leaves their proof to the output's hash).
   */
  write(file: StFile, out: WeightOut, plan: AdapterPlan, base: BaseModel, onBytes: (n: number, tensor: string) => void = () => undefined, source: ByteSource = file.source): Promise<void> {
    const sourceOf = (f: StFile): ByteSource => (f === file ? source : f.source);
    return writeWeightFile(file, out, plan, base, { pool: this.pool, sourceOf, blocks: new Blocks(), blockBytes: this.blockBytes, onBytes });
  }

  /** `write` into a new file at `outPath`, fsynced. */
  async writePath(file: StFile, outPath: string, plan: AdapterPlan, base: BaseModel, onBytes?: (n: number, tensor: string) => void): Promise<void> {
    const fh = await open(outPath, 'wx');
    try {
      await this.write(file, fileOut(fh), plan, base, onBytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** What the merged model keeps of the base directory's files besides its weight files. */
export interface OtherFiles {
  /** Kept (paths in the directory): regular files as they are, symlinks per `dereferenced`. */
  copied: string[];
  /**
   * Symlinks in `copied` that name a file outside the directory: the merged model gets that file
   * (a link would dangle there). A link to a file inside stays a link; a dangling one stays as it is.
   */
  dereferenced: string[];
  /** Left out: stale weights in other formats, which would not hold the merge. */
  skipped: string[];
  /** config.json's new text, when the merge must change it (configAdjuster); it is also in `copied`. */
  config?: string;
}

/**
 * The base directory's other files: each kept, but stale weights and `exclude` (an adapter
 * inside the base directory: nothing of the adapter is copied); config.json, read through a
 * link if it is one, adjusted; `changes` says how.
 */
export async function otherFiles(files: ModelFiles, base: BaseModel, plan: AdapterPlan, changes: string[], exclude?: string): Promise<OtherFiles> {
  const weights = new Set(base.files.map((f) => f.name));
  const out: OtherFiles = { copied: [], dereferenced: [], skipped: [] };
  for (const e of await files.list()) {
    if (weights.has(e.path) || (exclude !== undefined && (e.path === exclude || e.path.startsWith(`${exclude}/`)))) continue;
    if (STALE_WEIGHTS.test(e.path.slice(e.path.lastIndexOf('/') + 1))) {
      out.skipped.push(e.path);
      continue;
    }
    const target = e.link ? await files.linkTarget(e.path) : undefined;
    if (e.path === 'config.json' && (!e.link || target)) out.config = configAdjuster(base, plan, changes)(await files.text(e.path));
    if (target === 'outside') out.dereferenced.push(e.path);
    out.copied.push(e.path);
  }
  return out;
}

/** Writes the base directory's other files into `out` (otherFiles decides which, and how). */
async function copyOthers(baseDir: string, others: OtherFiles, out: string): Promise<void> {
  const deref = new Set(others.dereferenced);
  for (const rel of others.copied) {
    const from = path.join(baseDir, ...rel.split('/'));
    const to = path.join(out, ...rel.split('/'));
    await mkdir(path.dirname(to), { recursive: true });
    if (rel === 'config.json' && others.config !== undefined) {
      await writeFile(to, others.config, { mode: (await stat(from)).mode & 0o777 });
      const fh = await open(to, 'r+');
      await fh.sync();
      await fh.close();
    } else if ((await lstat(from)).isSymbolicLink() && !deref.has(rel)) await symlink(await readlink(from), to);
    else await copyFile(from, to); // a link outside: the file it names
  }
}

/**
 * merge_and_unload keeps the config, except that a model whose config ties the output layer to
 * the input embedding but which stores both tensors must stop tying them once only one (or each
 * differently) changed: transformers would otherwise re-tie them on load and drop the change.
 */
function configAdjuster(base: BaseModel, plan: AdapterPlan, changes: string[]): (text: string) => string | undefined {
  return (text) => {
    let cfg: unknown;
    try {
      cfg = JSON.parse(text);
    } catch {
      return undefined;
    }
    if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg)) return undefined;
    const c = cfg as Record<string, unknown>;
    const embed = [...base.tensors.keys()].find((n) => EMBED.test(n));
    const head = base.tensors.has('lm_head.weight') ? 'lm_head.weight' : undefined;
    const touched = (embed && plan.ops.has(embed)) || (head && plan.ops.has(head));
    if (embed && head && touched && c.tie_word_embeddings !== false) {
      const before = c.tie_word_embeddings === undefined ? 'unset (transformers default: true)' : JSON.stringify(c.tie_word_embeddings);
      c.tie_word_embeddings = false;
      changes.push(`tie_word_embeddings: ${before} -> false (the adapter changes ${plan.ops.has(embed) ? embed : head}; the base stores both)`);
      return `${JSON.stringify(c, null, 2)}\n`;
    }
    return undefined;
  };
}

export async function mergeLora(opts: MergeOptions): Promise<MergeResult> {
  const started = performance.now();
  const baseFiles = new DirFiles(opts.base);
  const base = await openBaseModel(baseFiles);
  const threads = opts.threads ?? Math.max(1, os.availableParallelism());
  const merger = new WeightMerger({ threads, simd: opts.simd, blockBytes: opts.blockBytes });
  let created = false;
  let owned = false;
  try {
    const plan = await planAdapter(opts.adapter, base, merger.pool);
    const existing = await readdir(opts.out).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
    if (existing && existing.length) throw new MstoreError('EEXISTS', `output directory ${opts.out} is not empty`);
    if (!existing) {
      await mkdir(opts.out);
      created = true;
    }
    owned = true;
    const result: MergeResult = {
      kernel: MERGE_KERNEL,
      format: plan.format,
      adapterFiles: plan.files,
      weightFiles: base.files.map((f) => f.name),
      index: base.index,
      copied: [],
      skipped: [],
      configChanges: [],
      tensors: base.tensors.size,
      merged: [...plan.ops.values()].map(describe),
      bytes: 0,
      seconds: 0,
      threads,
    };
    const total = base.files.reduce((s, f) => s + mergedHead(f).size, 0);
    const onBytes = (n: number, tensor: string): void => {
      result.bytes += n;
      opts.onProgress?.({ done: result.bytes, total, tensor: tensor || undefined });
    };
    for (const f of base.files) await merger.writePath(f, path.join(opts.out, f.name), plan, base, onBytes);
    // An adapter (directory or kohya file) inside the base directory is not copied into the merged model.
    const inside = path.relative(opts.base, opts.adapter);
    const exclude = inside && !inside.startsWith('..') && !path.isAbsolute(inside) ? inside.split(path.sep).join('/') : undefined;
    const others = await otherFiles(baseFiles, base, plan, result.configChanges, exclude);
    await copyOthers(opts.base, others, opts.out);
    result.copied = others.copied;
    result.skipped = others.skipped;
    result.seconds = (performance.now() - started) / 1000;
    return result;
  } catch (e) {
    if (created) await rm(opts.out, { recursive: true, force: true });
    else if (owned) await emptyDir(opts.out);
    throw e;
  } finally {
    await merger.close();
  }
}

/** Removes what a failed merge wrote into an output directory that existed (empty) before. */
async function emptyDir(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  await Promise.all(names.map((n) => rm(path.join(dir, n), { recursive: true, force: true })));
}
