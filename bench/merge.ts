/**
 * `npm run bench:merge` (issue 6, acceptance 4): merging a rank-16 PEFT adapter on all seven
 * linear modules of a Qwen3-0.6B-shaped BF16 model (28 layers, hidden 1024, intermediate 3072,
 * q 16 × 128, k/v 8 × 128, vocab 151936, tied embeddings) with the TypeScript worker
 * (`mstore merge-lora`) takes <= 1.5x the Python worker (workers/merge_lora.py, torch on the CPU)
 * in the same run, with a peak RSS <= 1 GB.
 *
 * The base model (~1.19 GB, finite fp32 values rounded to BF16) and the adapter (F32 factors) are
 * generated here, streamed to disk one chunk at a time. Every timing is the wall time of a real
 * process (performance.now around spawnSync), node / python startup and `import torch` included;
 * peak RSS and CPU times come from GNU time (`/usr/bin/time`; the TS process includes its worker
 * threads). Each rep runs both workers, in alternating order, each started after `sync` with a
 * missing --out; the medians of MSTORE_BENCH_REPS reps are compared, all reps are printed. Every
 * output file of every run is hashed (sha256, not timed): the two workers must agree byte for byte.
 *
 * Env: MSTORE_BENCH_DIR (work dir; default os.tmpdir()), MSTORE_BENCH_REPS (3), MSTORE_PYTHON
 * (tried before python3 and /usr/bin/python3), MSTORE_BENCH_CLI (the CLI file; default the
 * esbuild bundle when it is at least as new as dist/src/cli/main.js, else dist/src/cli/main.js).
 * Exit status: 0 when every acceptance figure passes, 1 otherwise.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createKernel, type DtypeCode } from '../src/merge/kernel.js';
import { CLI, DIST, GNU_TIME, MiB, cliLine, envNumber as num, median, run, secs, settle, table, warm, x, type Row, workDir } from './lib.js';

const ROOT = path.resolve(DIST, '..');
const WORKER = path.join(ROOT, 'workers', 'merge_lora.py');

const REPS = Math.max(1, Math.floor(num('MSTORE_BENCH_REPS', 3)));

// Qwen3-0.6B shapes.
const LAYERS = 28;
const HIDDEN = 1024;
const INTER = 3072;
const HEAD_DIM = 128;
const Q_DIM = 16 * HEAD_DIM;
const KV_DIM = 8 * HEAD_DIM;
const VOCAB = 151936;
const RANK = 16;
const ALPHA = 32;
/** [module, out, in] */
const PROJ: [string, number, number][] = [
  ['self_attn.q_proj', Q_DIM, HIDDEN],
  ['self_attn.k_proj', KV_DIM, HIDDEN],
  ['self_attn.v_proj', KV_DIM, HIDDEN],
  ['self_attn.o_proj', HIDDEN, Q_DIM],
  ['mlp.gate_proj', INTER, HIDDEN],
  ['mlp.up_proj', INTER, HIDDEN],
  ['mlp.down_proj', HIDDEN, INTER],
];
const MERGED = LAYERS * PROJ.length;

// ---------------------------------------------------------------- generation (streamed)

type Dt = 'BF16' | 'F32';
const CODE: Record<Dt, DtypeCode> = { BF16: 0, F32: 2 };
const SIZE: Record<Dt, number> = { BF16: 2, F32: 4 };
interface Spec {
  name: string;
  dtype: Dt;
  shape: number[];
  /** values are offset + uniform(-amp, amp), generated in fp32 and rounded to the dtype */
  amp: number;
  offset?: number;
}
const K = createKernel();

/**
 * Writes a safetensors file tensor by tensor, CHUNK elements at a time (a few MiB in memory):
 * fp32 values from a seeded xorshift32, rounded to nearest even by the merge kernel's encoder.
 */
function writeStreamed(file: string, specs: Spec[], seed: number, metadata?: Record<string, string>): number {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  for (const s of specs) {
    const bytes = s.shape.reduce((a, b) => a * b, 1) * SIZE[s.dtype];
    header[s.name] = { dtype: s.dtype, shape: s.shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const CHUNK = 1 << 20;
  const vals = new Float32Array(CHUNK);
  let x = seed >>> 0 || 1;
  const fd = openSync(file, 'w');
  try {
    writeSync(fd, len);
    writeSync(fd, json);
    for (const s of specs) {
      const n = s.shape.reduce((a, b) => a * b, 1);
      const scale = (2 * s.amp) / 4294967296;
      const base = (s.offset ?? 0) - s.amp;
      for (let done = 0; done < n; ) {
        const m = Math.min(CHUNK, n - done);
        for (let i = 0; i < m; i++) {
          x ^= x << 13;
          x ^= x >>> 17;
          x ^= x << 5;
          vals[i] = base + (x >>> 0) * scale;
        }
        const b = K.encode(m === CHUNK ? vals : vals.subarray(0, m), CODE[s.dtype]);
        for (let p = 0; p < b.length; ) p += writeSync(fd, b, p, b.length - p);
        done += m;
      }
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return 8 + Buffer.byteLength(json) + off;
}

function baseSpecs(): Spec[] {
  const ts: Spec[] = [{ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [VOCAB, HIDDEN], amp: 0.05 }];
  for (let l = 0; l < LAYERS; l++) {
    const p = `model.layers.${l}`;
    const norm = (name: string, n: number): Spec => ({ name: `${p}.${name}.weight`, dtype: 'BF16', shape: [n], amp: 0.05, offset: 1 });
    ts.push(norm('input_layernorm', HIDDEN));
    for (const [m, o, i] of PROJ) {
      if (m === 'mlp.gate_proj') ts.push(norm('post_attention_layernorm', HIDDEN));
      ts.push({ name: `${p}.${m}.weight`, dtype: 'BF16', shape: [o, i], amp: 0.05 });
      if (m === 'self_attn.k_proj') ts.push(norm('self_attn.k_norm', HEAD_DIM));
      if (m === 'self_attn.q_proj') ts.push(norm('self_attn.q_norm', HEAD_DIM));
    }
  }
  ts.push({ name: 'model.norm.weight', dtype: 'BF16', shape: [HIDDEN], amp: 0.05, offset: 1 });
  return ts; // tied: no lm_head.weight
}

function adapterSpecs(): Spec[] {
  const ts: Spec[] = [];
  for (let l = 0; l < LAYERS; l++) {
    for (const [m, o, i] of PROJ) {
      const k = `base_model.model.model.layers.${l}.${m}`;
      ts.push({ name: `${k}.lora_A.weight`, dtype: 'F32', shape: [RANK, i], amp: 1 / Math.sqrt(i) });
      ts.push({ name: `${k}.lora_B.weight`, dtype: 'F32', shape: [o, RANK], amp: 0.01 });
    }
  }
  return ts;
}

function generate(baseDir: string, adapterDir: string): { baseBytes: number; adapterBytes: number } {
  mkdirSync(baseDir);
  mkdirSync(adapterDir);
  const baseBytes = writeStreamed(path.join(baseDir, 'model.safetensors'), baseSpecs(), 0x9e3779b9, { format: 'pt' });
  writeFileSync(
    path.join(baseDir, 'config.json'),
    JSON.stringify(
      {
        architectures: ['Qwen3ForCausalLM'],
        model_type: 'qwen3',
        hidden_size: HIDDEN,
        intermediate_size: INTER,
        num_hidden_layers: LAYERS,
        num_attention_heads: Q_DIM / HEAD_DIM,
        num_key_value_heads: KV_DIM / HEAD_DIM,
        head_dim: HEAD_DIM,
        vocab_size: VOCAB,
        max_position_embeddings: 40960,
        rms_norm_eps: 1e-6,
        rope_theta: 1000000,
        hidden_act: 'silu',
        tie_word_embeddings: true,
        torch_dtype: 'bfloat16',
      },
      null,
      2,
    ) + '\n',
  );
  writeFileSync(path.join(baseDir, 'generation_config.json'), JSON.stringify({ do_sample: true, temperature: 0.6, top_p: 0.95 }, null, 2) + '\n');
  const adapterBytes = writeStreamed(path.join(adapterDir, 'adapter_model.safetensors'), adapterSpecs(), 0x85ebca6b);
  writeFileSync(
    path.join(adapterDir, 'adapter_config.json'),
    JSON.stringify(
      {
        peft_type: 'LORA',
        task_type: 'CAUSAL_LM',
        base_model_name_or_path: 'Qwen/Qwen3-0.6B',
        r: RANK,
        lora_alpha: ALPHA,
        lora_dropout: 0.05,
        target_modules: PROJ.map(([m]) => m.split('.')[1]),
        bias: 'none',
        use_rslora: false,
        use_dora: false,
        fan_in_fan_out: false,
      },
      null,
      2,
    ) + '\n',
  );
  return { baseBytes, adapterBytes };
}

// ---------------------------------------------------------------- helpers






function sha256File(file: string): string {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(8 * MiB);
  const fd = openSync(file, 'r');
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/** name -> sha256 of every file of an output directory (flat: neither worker writes subdirectories here). */
function digests(dir: string): Map<string, string> {
  return new Map(readdirSync(dir).sort().map((n) => [n, sha256File(path.join(dir, n))]));
}


/** The first interpreter that imports torch: $MSTORE_PYTHON, python3, /usr/bin/python3. */
function findPython(): { python?: string; info: string; tried: string[] } {
  const tried = [process.env.MSTORE_PYTHON, 'python3', '/usr/bin/python3'].filter((p): p is string => !!p);
  for (const p of tried) {
    const r = spawnSync(p, ['-c', 'import sys, torch; print(torch.__version__, torch.get_num_threads(), sys.version.split()[0])'], { encoding: 'utf8' });
    if (r.status === 0) {
      const [tv, th, pv] = r.stdout.trim().split(/\s+/);
      return { python: p, info: `torch ${tv} (${th} intra-op thread${th === '1' ? '' : 's'}), Python ${pv}`, tried };
    }
  }
  return { info: 'none of them imports torch', tried };
}

const mbOf = (kb: number): number => (kb * 1024) / 1e6;

const rows: Row[] = [];
const summary: Row[] = [];
const accept = (r: Row): void => {
  rows.push(r);
  summary.push(r);
};


// ---------------------------------------------------------------- setup

// base 1.19 GB + two outputs alive at once (TS temp dir before its rename, or the hashed one) + headroom
const { root, cleanup } = workDir('mstore-bench-merge-', 4.5 * 2 ** 30);

let failed = false;
try {
  const load0 = os.loadavg();
  const baseDir = path.join(root, 'base');
  const adapterDir = path.join(root, 'adapter');
  const tg = performance.now();
  const { baseBytes, adapterBytes } = generate(baseDir, adapterDir);
  const genMs = performance.now() - tg;
  const baseFile = path.join(baseDir, 'model.safetensors');
  settle();
  warm(baseFile);
  warm(path.join(adapterDir, 'adapter_model.safetensors'));

  const py = findPython();
  process.stdout.write(
    `mstore bench:merge: Qwen3-0.6B-shaped BF16 base (${LAYERS} layers, hidden ${HIDDEN}, intermediate ${INTER}, vocab ${VOCAB}, tied), ` +
      `${(baseBytes / 1e9).toFixed(2)} GB; PEFT adapter r=${RANK} alpha=${ALPHA} on ${PROJ.length} modules x ${LAYERS} layers (${MERGED} tensors), ` +
      `${(adapterBytes / 1e6).toFixed(1)} MB F32; generated in ${secs(genMs)}; ${REPS} reps, in ${root}\n` +
      `${cliLine()}\n` +
      `python (tried ${py.tried.join(', ')}): ${py.python ? `${py.python}, ${py.info}` : `${py.info}: the Python anchor is unavailable, only the TS numbers are reported`}\n` +
      `peak RSS: ${GNU_TIME ? GNU_TIME : 'unavailable (/usr/bin/time missing)'}\n` +
      `${os.cpus().length} cpus, load average ${load0.map((l) => l.toFixed(2)).join(' ')}\n\n`,
  );

  // -------------------------------------------------------------- interleaved reps
  type Who = 'ts' | 'py';
  const t: Record<Who, number[]> = { ts: [], py: [] };
  const cpu: Record<Who, string[]> = { ts: [], py: [] };
  const rss: Record<Who, number[]> = { ts: [], py: [] };
  const inner: Record<Who, number[]> = { ts: [], py: [] };
  const sums: Record<Who, Map<string, string>[]> = { ts: [], py: [] };
  const order: string[] = [];
  let tsThreads: number | undefined;
  const merged: Record<Who, number[]> = { ts: [], py: [] };
  const outDir = path.join(root, 'out');

  const one = (who: Who): void => {
    rmSync(outDir, { recursive: true, force: true });
    settle();
    const r =
      who === 'ts'
        ? run(process.execPath, [CLI, 'merge-lora', '--base', baseDir, '--adapter', adapterDir, '--out', outDir, '--json'], { rusage: true })
        : run(py.python!, [WORKER, '--base', baseDir, '--adapter', adapterDir, '--out', outDir], { rusage: true });
    t[who].push(r.ms);
    if (r.cpu) {
      cpu[who].push(`${r.cpu.user.toFixed(2)}u+${r.cpu.sys.toFixed(2)}s`);
      rss[who].push(r.cpu.maxKb);
    }
    if (who === 'ts') {
      const j = JSON.parse(r.stdout) as { seconds: number; threads: number; merged: unknown[] };
      inner.ts.push(j.seconds * 1000);
      tsThreads = j.threads;
      merged.ts.push(j.merged.length);
    } else {
      const m = /^merged (\d+) of \d+ tensors .* in ([\d.]+) s/m.exec(r.stdout);
      if (m) {
        inner.py.push(Number(m[2]) * 1000);
        merged.py.push(Number(m[1]));
      }
    }
    sums[who].push(digests(outDir)); // not timed
    rmSync(outDir, { recursive: true, force: true });
  };

  for (let i = 0; i < REPS; i++) {
    const seq: Who[] = !py.python ? ['ts'] : i % 2 === 0 ? ['ts', 'py'] : ['py', 'ts'];
    order.push(seq.join('>'));
    for (const who of seq) one(who);
  }
  settle();
  const load1 = os.loadavg();

  // -------------------------------------------------------------- report
  const mTs = median(t.ts);
  const mPy = py.python ? median(t.py) : NaN;
  const ratio = mTs / mPy;
  if (py.python) {
    rows.push({ what: 'python workers/merge_lora.py (torch cpu)', value: secs(mPy), ratio: '1.00x', target: 'anchor' });
    accept({ what: 'mstore merge-lora (TS worker)', value: secs(mTs), ratio: `${x(ratio)} python`, target: '<= 1.50x', pass: ratio <= 1.5 });
  } else {
    rows.push({ what: 'python workers/merge_lora.py (torch cpu)', value: 'unavailable (no python with torch)', target: 'anchor' });
    accept({ what: 'mstore merge-lora (TS worker)', value: secs(mTs), ratio: 'no anchor', target: '<= 1.50x', pass: false });
  }
  rows.push({ what: '  merge time reported by the worker', value: `ts ${secs(median(inner.ts))}${inner.py.length ? `, py ${secs(median(inner.py))}` : ''}`, ratio: inner.py.length ? `${x(median(inner.ts) / median(inner.py))} python` : undefined, target: 'context (no startup)' });
  if (GNU_TIME) {
    const tsPeak = Math.max(...rss.ts.map(mbOf));
    accept({ what: `peak RSS, mstore merge-lora (${tsThreads ?? '?'} threads)`, value: `${tsPeak.toFixed(0)} MB`, ratio: 'max over reps', target: '<= 1000 MB', pass: tsPeak <= 1000 });
    if (rss.py.length) rows.push({ what: 'peak RSS, python worker', value: `${Math.max(...rss.py.map(mbOf)).toFixed(0)} MB`, ratio: 'max over reps', target: 'context' });
  } else accept({ what: 'peak RSS, mstore merge-lora', value: 'unavailable (/usr/bin/time missing)', target: '<= 1000 MB', pass: false });

  // byte identity: every file of every run against the first TS run
  const ref = sums.ts[0];
  const same = (a: Map<string, string>): boolean => a.size === ref.size && [...a].every(([k, v]) => ref.get(k) === v);
  const stReps = [...sums.ts, ...sums.py].map(same);
  const stHash = ref.get('model.safetensors') ?? '?';
  if (py.python) {
    accept({
      what: 'outputs byte-identical (TS == python)',
      value: `${stReps.filter(Boolean).length}/${stReps.length} runs`,
      ratio: `model.safetensors ${stHash.slice(0, 16)}…, ${ref.size} files`,
      target: 'all',
      pass: stReps.every(Boolean),
    });
  } else accept({ what: 'outputs byte-identical (TS == python)', value: 'not checked (no python)', target: 'all', pass: false });
  const counts = (xs: number[]): string => [...new Set(xs)].join('/') || 'none';
  const allRuns: number[] = [...merged.ts, ...merged.py];
  accept({
    what: 'tensors merged per run',
    value: `ts ${counts(merged.ts)}${py.python ? `, py ${counts(merged.py)}` : ''}`,
    target: `${MERGED} each`,
    pass: allRuns.length === REPS * (py.python ? 2 : 1) && allRuns.every((n) => n === MERGED),
  });

  const r0 = (xs: number[]): string => xs.map((v) => Math.round(v)).join(' ');
  process.stdout.write(`${table(rows)}\n\n`);
  process.stdout.write(
    `order per rep: ${order.join(' | ')}\n` +
      `raw wall ms per rep: ts ${r0(t.ts)}${py.python ? ` | py ${r0(t.py)}` : ''}\n` +
      (py.python ? `per-rep ratios ts/py: ${t.ts.map((v, i) => (v / t.py[i]).toFixed(2)).join(' ')}\n` : '') +
      `worker-reported ms per rep: ts ${r0(inner.ts)}${inner.py.length ? ` | py ${r0(inner.py)}` : ''}\n` +
      `cpu s per rep (user+sys): ts ${cpu.ts.join(' ')}${cpu.py.length ? ` | py ${cpu.py.join(' ')}` : ''}\n` +
      `peak RSS MB per rep: ts ${rss.ts.map((k) => mbOf(k).toFixed(0)).join(' ')}${rss.py.length ? ` | py ${rss.py.map((k) => mbOf(k).toFixed(0)).join(' ')}` : ''}\n` +
      `model.safetensors sha256: ${stHash}\n` +
      `load average ${load0[0].toFixed(2)} at start, ${load1[0].toFixed(2)} at end (${os.cpus().length} cores: > ~0.5 at start means another job competed)\n\n`,
  );
  process.stdout.write(`SUMMARY (acceptance)\n${table(summary)}\n`);
  failed = summary.some((r) => r.pass === false);
  process.stdout.write(`\n${failed ? 'FAIL' : 'PASS'}: ${summary.filter((r) => r.pass).length}/${summary.length} acceptance figures pass\n`);
} catch (e) {
  failed = true;
  process.stderr.write(`bench failed: ${(e as Error).stack ?? e}\n`);
  if (rows.length) process.stdout.write(`partial results:\n${table(rows)}\n`);
} finally {
  cleanup();
}
process.exitCode = failed ? 1 : 0;
