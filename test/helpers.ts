/** Test fixtures: real safetensors files, a real CLI process, temporary directories. */
import { spawnSync, spawn, type SpawnSyncReturns, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, openSync, writeSync, closeSync, mkdirSync, writeFileSync, readFileSync, readSync, readdirSync, lstatSync, readlinkSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The shipped entry point (package.json bin): the esbuild bundle of dist/src/cli/main.js. */
export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bundle/cli.js');

export function tmpDir(prefix = 'mstore-test-'): string {
  const base = process.env.MSTORE_TEST_TMP ?? os.tmpdir();
  mkdirSync(base, { recursive: true });
  return mkdtempSync(path.join(base, prefix));
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function mstore(cwd: string, args: string[], env: Record<string, string> = {}): RunResult {
  const r: SpawnSyncReturns<string> = spawnSync(process.execPath, [CLI, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', ...env },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs mstore and returns its stdout; throws with stderr when it fails. */
export function mstoreOk(cwd: string, args: string[]): string {
  const r = mstore(cwd, args);
  if (r.code !== 0) throw new Error(`mstore ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Runs mstore and parses --json output; throws with stderr when it fails. */
export function mstoreJson<T = unknown>(cwd: string, args: string[]): T {
  return JSON.parse(mstoreOk(cwd, [...args, '--json'])) as T;
}

export function spawnMstore(cwd: string, args: string[]) {
  return spawn(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
}

export function git(gitdir: string, args: string[]): RunResult {
  const r = spawnSync('git', [`--git-dir=${gitdir}`, ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Deterministic, incompressible bytes: xoshiro128** seeded from sha256(seed). Same seed,
 * same bytes (unchanged tensors must dedup); ~1.4 GB/s, faster than node's AES-CTR here.
 * Random-looking data matters: repetitive fixtures flatter content-defined chunkers.
 */
export function fillPattern(buf: Buffer, seed: number): void {
  if (buf.byteOffset % 4 !== 0) {
    const aligned = Buffer.alloc(buf.length);
    fillPattern(aligned, seed);
    aligned.copy(buf);
    return;
  }
  const st = createHash('sha256').update(`mstore-test-${seed}`).digest();
  let a = st.readUInt32LE(0) | 1;
  let b = st.readUInt32LE(4);
  let c = st.readUInt32LE(8);
  let d = st.readUInt32LE(12);
  const words = buf.length >>> 2;
  const u = new Uint32Array(buf.buffer, buf.byteOffset, words);
  for (let i = 0; i < words; i++) {
    const m = Math.imul(b, 5);
    u[i] = Math.imul((m << 7) | (m >>> 25), 9);
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = (d << 11) | (d >>> 21);
  }
  for (let i = words << 2; i < buf.length; i++) buf[i] = (a >>> ((i & 3) * 8)) & 0xff;
}

export interface TensorSpec {
  name: string;
  dtype: string;
  shape: number[];
  /** Seed of the tensor's bytes: same seed, same bytes. */
  seed: number;
}

const DTYPE_BYTES: Record<string, number> = { BF16: 2, F16: 2, F32: 4, U8: 1, I64: 8 };

/** Writes a valid safetensors file, streaming tensor by tensor (memory bounded by 16 MiB). */
export function writeSafetensors(file: string, tensors: TensorSpec[], metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const fd = openSync(file, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    writeSync(fd, len);
    writeSync(fd, Buffer.from(json));
    // Every byte written is filled first: no need to zero it, nor to take 16 MiB for small tensors.
    const largest = Math.max(0, ...tensors.map((t) => t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype]));
    const piece = Buffer.allocUnsafe(Math.min(16 * 1024 * 1024, largest));
    for (const t of tensors) {
      let left = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
      let part = 0;
      while (left > 0) {
        const n = Math.min(left, piece.length);
        fillPattern(piece.subarray(0, n), t.seed * 1000 + part++);
        writeSync(fd, piece, 0, n);
        left -= n;
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** A safetensors file of F32 tensors with finite, deterministic values. */
export function writeF32(file: string, tensors: [string, number[], (i: number) => number][]): void {
  const header: Record<string, unknown> = {};
  const parts: Buffer[] = [];
  let off = 0;
  for (const [name, shape, f] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1);
    const b = Buffer.alloc(n * 4);
    for (let i = 0; i < n; i++) b.writeFloatLE(f(i), i * 4);
    header[name] = { dtype: 'F32', shape, data_offsets: [off, off + b.length] };
    off += b.length;
    parts.push(b);
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, Buffer.from(json), ...parts]));
}

/** `count` BF16 tensors of `rows` x `cols`, named like a transformer's layers. */
export function layerTensors(count: number, rows: number, cols: number, seedBase = 1): TensorSpec[] {
  return Array.from({ length: count }, (_, i) => ({ name: `model.layers.${i}.mlp.weight`, dtype: 'BF16', shape: [rows, cols], seed: seedBase + i }));
}

/** A small Hugging Face style model directory with an adapter and evolution snapshots. */
export function writeModelDir(dir: string, opts: { tensors?: TensorSpec[]; step?: number } = {}): void {
  mkdirSync(path.join(dir, 'adapter'), { recursive: true });
  mkdirSync(path.join(dir, 'evolution'), { recursive: true });
  writeSafetensors(path.join(dir, 'model.safetensors'), opts.tensors ?? layerTensors(4, 256, 512));
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'qwen3', hidden_size: 512 }, null, 2));
  writeFileSync(path.join(dir, 'adapter', 'adapter_config.json'), JSON.stringify({ r: 8, lora_alpha: 16, target_modules: ['q_proj'] }));
  writeSafetensors(path.join(dir, 'adapter', 'adapter_model.safetensors'), [
    { name: 'base_model.model.q_proj.lora_A.weight', dtype: 'F32', shape: [8, 512], seed: 900 + (opts.step ?? 0) },
    { name: 'base_model.model.q_proj.lora_B.weight', dtype: 'F32', shape: [512, 8], seed: 950 + (opts.step ?? 0) },
  ]);
  const step = opts.step ?? 1;
  writeFileSync(
    path.join(dir, 'evolution', `step_${String(step).padStart(5, '0')}.json`),
    JSON.stringify({ step, loss: 2 / step, lr: 1e-4 }),
  );
}

/** sha256File's read buffer, allocated once: a zeroed 8 MiB per file hashed cost a tree of small files more than hashing it. */
let hashBuf: Buffer | undefined;

export function sha256File(file: string): string {
  const h = createHash('sha256');
  const fd = openSync(file, 'r');
  const buf = (hashBuf ??= Buffer.allocUnsafe(8 * 1024 * 1024));
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (!n) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}


/** Every regular file and symlink under dir, relative path -> sha256 (links: 'link:' + target). */
export function treeDigest(dir: string, skip = new Set(['.mstore'])): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(path.join(dir, rel))) {
      if (skip.has(name)) continue;
      const p = rel ? `${rel}/${name}` : name;
      const st = lstatSync(path.join(dir, p));
      if (st.isDirectory()) walk(p);
      else if (st.isSymbolicLink()) out.set(p, `link:${readlinkSync(path.join(dir, p))}`);
      else out.set(p, `${sha256File(path.join(dir, p))}:${(st.mode & 0o111) !== 0 ? 'x' : '-'}`);
    }
  };
  walk('');
  return out;
}


export function readJson<T = unknown>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

/** mulberry32: a small seeded PRNG in [0, 1), so a failing random schedule can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The URL a server child prints in its "listening on URL" line (mstore serve, the inference
 * stand-in, bench sinks); rejects if the child exits first or stays silent for `timeoutMs`.
 */
export function listeningUrl(child: ChildProcess, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const t = setTimeout(() => reject(new Error(`${child.spawnargs.join(' ')} printed no "listening on" line in ${timeoutMs} ms`)), timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      const m = /listening on (https?:\/\/\S+)/.exec(text);
      if (m) {
        clearTimeout(t);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${child.spawnargs.join(' ')} exited ${code}`));
    });
  });
}

/** Refs, pack files and the log of the store at `ws`: what a failed operation must leave as it was. */
export function storeState(ws: string): string {
  const packs: string[] = [];
  const walk = (d: string): void => {
    for (const n of readdirSync(d)) {
      const p = path.join(d, n);
      if (lstatSync(p).isDirectory()) walk(p);
      else packs.push(`${path.relative(ws, p)}:${lstatSync(p).size}`);
    }
  };
  walk(path.join(ws, '.mstore', 'packs'));
  return [git(path.join(ws, '.mstore/git'), ['for-each-ref']).stdout, packs.sort().join('\n'), mstore(ws, ['log', '--json']).stdout].join('\n---\n');
}
