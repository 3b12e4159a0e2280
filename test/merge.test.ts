/**
 * LoRA merge (issue 6, part 1): the TypeScript worker (in-process and `mstore merge-lora`) and the
 * torch worker (workers/merge_lora.py) against an independent torch reference
 * (test/merge_reference.py: bf16(fp32 W + fp32 Δ) from an explicit recipe written here), on small
 * Qwen-like, GPT-2-like and SD-like models generated in the test. Torch is required: without it
 * these tests fail (`bash .ci/run` builds the venv; test/merge-peft.test.ts checks against peft itself).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { hfPython } from './hf-helpers.js';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, openSync, readSync, closeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanup, mstore, readJson, tmpDir } from './helpers.js';
import { createKernel, type DtypeCode } from '../src/merge/kernel.js';
import { mergeLora, type MergeResult } from '../src/merge/merge.js';
import { patternValue } from '../src/merge/peft.js';
import { MstoreError } from '../src/lib/errors.js';
import { ADAPTER_ST, caseA, caseB, caseC, caseD, caseE, caseF, H, peftKey, QD, qwen, rng, t, writeSt, type Case, type T } from './merge-cases.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WORKER = path.join(ROOT, 'workers', 'merge_lora.py');
const REFERENCE = path.join(ROOT, 'test', 'merge_reference.py');
const K = createKernel();

// ------------------------------------------------------------------ python with torch

/**
 * The torch reference runs on the Hugging Face venv's torch (pip's build: MKL on the CPU, whose
 * sgemm sums with FMA, as CUDA does and as the kernel does): test/hf-helpers.ts finds it.
 */
const torchPython = hfPython;

function py(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(torchPython(), args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: { ...process.env, OMP_NUM_THREADS: '1' } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

// ------------------------------------------------------------------ fixtures (test/merge-cases.ts)

let root = '';
const cases: Record<string, Case> = {};

const tsOut = (c: string): string => path.join(root, `${c}-ts`);
const pyOut = (c: string): string => path.join(root, `${c}-py`);

interface TsMerges {
  /** The library's reports, cases A, B, D, E, F. */
  results: Record<string, MergeResult>;
  /** Case C through the real CLI (`--json`). */
  cli: MergeResult & { out: string };
}
let tsMerged: Promise<TsMerges> | undefined;

/**
 * Every case merged by the TS worker into tsOut(case), once, on first use: each test that
 * reads these outputs asks for them (no test depends on another having run); none changes them.
 */
function tsMerges(): Promise<TsMerges> {
  tsMerged ??= (async () => {
    const threads: Record<string, number> = { A: 2, B: 0, D: 1, E: 2, F: 1 };
    const results: Record<string, MergeResult> = {};
    for (const [name, n] of Object.entries(threads)) {
      const c = cases[name];
      results[name] = await mergeLora({ base: c.base, adapter: c.adapter, out: tsOut(name), threads: n });
    }
    // C through the real CLI, with --json
    const r = mstore(root, ['merge-lora', '--base', cases.C.base, '--adapter', cases.C.adapter, '--out', tsOut('C'), '--json']);
    if (r.code !== 0) throw new Error(`merge-lora of case C exited ${r.code}: ${r.stderr}`);
    return { results, cli: JSON.parse(r.stdout) as MergeResult & { out: string } };
  })();
  return tsMerged;
}

let pyMerged: Record<string, { code: number; stdout: string; stderr: string }> | undefined;

/** Every case merged by the Python worker into pyOut(case), once, on first use (read-only after). */
function pyMerges(): Record<string, { code: number; stdout: string; stderr: string }> {
  if (!pyMerged) {
    const runs: Record<string, { code: number; stdout: string; stderr: string }> = {};
    for (const [name, c] of Object.entries(cases)) runs[name] = py([WORKER, '--base', c.base, '--adapter', c.adapter, '--out', pyOut(name), '--json', '--device', 'cpu']);
    pyMerged = runs;
  }
  return pyMerged;
}

test.before(() => {
  root = tmpDir('mstore-merge-');
  for (const c of [caseA(root), caseB(root), caseC(root), caseD(root), caseE(root)]) cases[c.name] = c;
  cases.F = caseF(root, cases.E);
});

test.after(() => cleanup(root));

test('TS worker merges every case (worker threads, main thread, CLI)', async () => {
  const { results, cli: j } = await tsMerges();
  assert.is(j.out, tsOut('C'));
  assert.is(j.format, 'peft');
  assert.is(j.merged.length, 8);
  assert.is(j.merged.filter((m) => m.kind === 'lora' && m.rank === 4 && m.scale === 2).length, 6);
  assert.equal(j.merged.filter((m) => m.kind === 'replace').map((m) => m.target), ['transformer.h.0.attn.c_attn.bias', 'transformer.h.1.attn.c_attn.bias']);
  assert.is(readdirSync(root).filter((n) => n.startsWith('.')).length, 0, 'no temporary directory left');

  const a = results.A;
  assert.is(a.format, 'peft');
  assert.is(a.tensors, qwen('BF16', 2).length);
  assert.is(a.merged.length, 16);
  const byTarget = new Map(a.merged.map((m) => [m.target, m]));
  assert.is(byTarget.get('model.layers.0.mlp.down_proj.weight')?.rank, 4, 'rank_pattern');
  assert.is(byTarget.get('model.layers.1.self_attn.q_proj.weight')?.alpha, 32, 'alpha_pattern');
  assert.is(byTarget.get('model.layers.0.self_attn.q_proj.weight')?.alpha, 16);
  assert.is(byTarget.get('model.embed_tokens.weight')?.kind, 'embedding');
  assert.is(byTarget.get('lm_head.weight')?.kind, 'replace');
  assert.equal(a.weightFiles, ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
  assert.is(results.B.merged.find((m) => m.kind === 'bias')?.target, 'model.layers.0.self_attn.q_proj.bias');
  assert.is(results.B.merged.find((m) => m.target === 'model.embed_tokens.weight')?.kind, 'replace+embedding');
  assert.equal(results.F.merged.map((m) => m.kind), ['lora', 'lora', 'lora']);
  assert.equal(results.D.merged.map((m) => m.kind), ['dora', 'dora']);
  assert.is(results.E.format, 'kohya');
  assert.is(results.E.merged.length, 5);
});

test('output files: base header bytes, shards and index, non-weight files, config adjusted like merge_and_unload', async () => {
  const { results } = await tsMerges();
  const c = cases.A;
  const out = tsOut('A');
  for (const f of c.baseFiles) {
    const head = (file: string): Buffer => {
      const fd = openSync(file, 'r');
      const b = Buffer.alloc(8);
      readSync(fd, b, 0, 8, 0);
      const n = Number(b.readBigUInt64LE(0));
      const all = Buffer.alloc(8 + n);
      readSync(fd, all, 0, 8 + n, 0);
      closeSync(fd);
      return all;
    };
    const h = head(path.join(out, path.basename(f)));
    assert.ok(h.equals(head(f)), `${path.basename(f)}: header bytes kept`);
    assert.is(h.length % 8, 0);
    assert.match(h.toString(), '"__metadata__":{"format":"pt"}');
  }
  assert.is(readFileSync(path.join(out, 'model.safetensors.index.json'), 'utf8'), readFileSync(path.join(c.base, 'model.safetensors.index.json'), 'utf8'));
  for (const f of ['tokenizer.json', 'generation_config.json', 'extra/notes.txt']) {
    assert.is(readFileSync(path.join(out, f), 'utf8'), readFileSync(path.join(c.base, f), 'utf8'), f);
  }
  assert.not.ok(existsSync(path.join(out, 'pytorch_model.bin')), 'stale weights in another format are not copied');
  assert.equal(results.A.skipped, ['pytorch_model.bin']);
  const cfg = readJson<Record<string, unknown>>(path.join(out, 'config.json'));
  assert.equal(cfg, { model_type: 'qwen3', hidden_size: H, tie_word_embeddings: false, torch_dtype: 'bfloat16' });
  assert.is(results.A.configChanges.length, 1);
  assert.match(results.A.configChanges[0], 'tie_word_embeddings: true -> false');
  // untied base: config copied byte for byte
  assert.is(readFileSync(path.join(tsOut('B'), 'config.json'), 'utf8'), readFileSync(path.join(cases.B.base, 'config.json'), 'utf8'));
});

test('Python worker (torch) merges every case', async () => {
  const { results } = await tsMerges();
  const runs = pyMerges();
  for (const name of Object.keys(cases)) {
    const c = cases[name];
    const r = runs[name];
    assert.is(r.code, 0, `${name}: ${r.stderr}`);
    const j = JSON.parse(r.stdout) as { merged: MergeResult['merged']; format: string; configChanges: string[]; device: string };
    if (results[name]) assert.equal(j.merged, results[name].merged, `${name}: same report of merged tensors`);
    else assert.is(j.merged.length, 8, name);
    assert.is(j.device, 'cpu');
    if (name === 'A') assert.equal(j.configChanges, results.A.configChanges);
    if (existsSync(path.join(c.base, 'config.json'))) {
      assert.is(readFileSync(path.join(pyOut(name), 'config.json'), 'utf8'), readFileSync(path.join(tsOut(name), 'config.json'), 'utf8'), `${name}: config.json`);
    }
  }
});

interface Cmp {
  problems: string[];
  elements: number;
  identical: number;
  maxUlp: number;
  worst: string | null;
}

function assertAgree(c: Cmp, what: string): void {
  assert.equal(c.problems, [], `${what}: same tensor set, order, dtypes, shapes`);
  assert.ok(c.elements > 0, what);
  assert.ok(c.maxUlp <= 1, `${what}: max ${c.maxUlp} ulp (${c.worst})`);
  assert.ok(c.identical / c.elements >= 0.999, `${what}: ${c.identical}/${c.elements} bit-identical`);
}

const ROUND_CASES = [
  0x00000000, 0x80000000, 0x3f800000, 0xbf800000, 0x7f800000, 0xff800000, 0x7f7fffff, 0xff7fffff,
  0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001, 0x7f7f8000, 0x00000001, 0x80000001, 0x00400000,
  0x38800000, 0x387fe000, 0x33800000, 0x33800001, 0x33000000, 0x33000001, 0x477fe000, 0x477ff000, 0x477fefff,
  0x38801000, 0x38803000, 0x38802000, 0x3c00f000, 0x7f000000, 0x0f000000, 0x46fffe00,
];

test('TS and Python outputs match the torch reference (≤ 1 ulp, ≥ 99.9 % identical), and each other; rounding matches torch', async () => {
  await tsMerges();
  for (const [name, r] of Object.entries(pyMerges())) assert.is(r.code, 0, `${name} (python): ${r.stderr}`);
  const jobs = {
    cases: Object.values(cases).map((c) => ({ name: c.name, base: c.baseFiles, ops: c.ops, outs: [tsOut(c.name), pyOut(c.name)] })),
    pairs: Object.keys(cases).map((n) => [tsOut(n), pyOut(n)]),
    round: [...ROUND_CASES, ...Array.from({ length: 4000 }, (_, i) => (Math.imul(i + 1, 2654435761) >>> 0) ^ (i << 3))],
  };
  const jobFile = path.join(root, 'jobs.json');
  writeFileSync(jobFile, JSON.stringify(jobs));
  const r = py([REFERENCE, jobFile]);
  assert.is(r.code, 0, r.stderr);
  if (process.env.MSTORE_MERGE_DEBUG) writeFileSync(path.join(process.env.MSTORE_MERGE_DEBUG, 'reference.json'), r.stdout);
  const res = JSON.parse(r.stdout) as { cases: Record<string, (Cmp & { dir: string })[]>; pairs: (Cmp & { a: string })[]; round: { bf16: number[]; f16: number[] } };
  for (const [name, outs] of Object.entries(res.cases)) {
    assert.is(outs.length, 2);
    assertAgree(outs[0], `case ${name}: TS worker vs torch reference`);
    assertAgree(outs[1], `case ${name}: Python worker vs torch reference`);
  }
  for (const p of res.pairs) assertAgree(p, `${path.basename(p.a)}: TS vs Python worker`);
  // fp32 → bf16/f16, round to nearest even: every non-NaN pattern exactly as torch rounds it.
  let checked = 0;
  jobs.round.forEach((bits, i) => {
    if ((bits & 0x7fffffff) >>> 0 > 0x7f800000) {
      assert.ok((K.f32BitsToBf16(bits) & 0x7fff) > 0x7f80, 'NaN stays NaN (bf16)');
      assert.ok((K.f32BitsToF16(bits) & 0x7fff) > 0x7c00, 'NaN stays NaN (f16)');
      return;
    }
    assert.is(K.f32BitsToBf16(bits), res.round.bf16[i], `bf16 of 0x${bits.toString(16)}`);
    assert.is(K.f32BitsToF16(bits), res.round.f16[i], `f16 of 0x${bits.toString(16)}`);
    checked++;
  });
  assert.ok(checked > 3000);
});

test('SIMD and plain JS kernels are bit-identical; f16 decode round-trips', () => {
  const js = createKernel({ simd: false });
  const shapes: [number, number, number, DtypeCode, boolean][] = [
    [9, 37, 3, 0, false], [40, 1024, 16, 0, false], [6, 19, 1, 1, false], [12, 2880, 8, 1, false], [5, 130, 5, 2, false],
    [7, 45, 4, 0, true], [7, 45, 4, 1, true], [7, 45, 4, 2, true],
  ];
  for (const [rows, cols, r, dt, overflow] of shapes) {
    const g = rng(rows * 131 + cols);
    const P = Float32Array.from({ length: rows * r }, () => g() - 0.5);
    const Q = Float32Array.from({ length: r * cols }, () => g() - 0.5);
    // with `overflow`, some weights sit at the top of the range: W + Δ rounds to ±Inf there
    const big = dt === 1 ? 65500 : 3.39e38;
    const src = K.encode(Float32Array.from({ length: rows * cols }, (_, i) => (overflow && i % 11 === 5 ? big : g() - 0.5)), dt);
    const bytes = rows * cols * (dt === 2 ? 4 : 2);
    const a = new Uint8Array(bytes);
    const b = new Uint8Array(bytes);
    const job = { src, srcDtype: dt, dst: a, dstDtype: dt, rows, cols, r, P, Q: Q.map((q) => (overflow ? q * 1e37 : q)), pRow0: 0, scale: 0.75, mag: null };
    const ra = K.mergeRows(job, 0, rows);
    const rb = js.mergeRows({ ...job, dst: b }, 0, rows);
    assert.ok(Buffer.from(a).equals(Buffer.from(b)), `${rows}x${cols} r${r} dtype ${dt}`);
    assert.equal(ra, rb, `${rows}x${cols} r${r} dtype ${dt}: non-finite count and first index`);
    if (overflow) assert.ok(ra.bad > 0 && ra.firstBad >= 0, `dtype ${dt}: overflow detected`);
  }
  for (let h = 0; h < 65536; h++) {
    const f = K.f16BitsToF32(h);
    if (Number.isNaN(f)) continue;
    const bits = new Uint32Array(Float32Array.of(f).buffer)[0];
    assert.is(K.f32BitsToF16(bits), h);
  }
});

test('rank_pattern / alpha_pattern: first matching key wins, anchored like re.match((.*\\.)?(k)$)', () => {
  const p = { 'q_proj': 4, 'layers\\.1\\..*': 2, 'proj': 9 };
  assert.is(patternValue(p, 'model.layers.0.self_attn.q_proj'), 4);
  assert.is(patternValue(p, 'model.layers.1.self_attn.k_proj'), 2);
  assert.is(patternValue(p, 'model.layers.0.self_attn.k_proj'), undefined, "'proj' must match a whole name component run");
  assert.is(patternValue(p, 'proj'), 9);
  assert.is(patternValue({ 'xq_proj': 1 }, 'model.q_proj'), undefined);
});

/** Adapter variants of case D's base that must fail, each naming the tensor. */
function badAdapters(): { name: string; dir: string; expect: string }[] {
  const c = cases.D;
  const mk = (name: string, tensors: T[], cfg: object): string => {
    const dir = path.join(root, `bad-${name}`);
    mkdirSync(dir);
    writeSt(path.join(dir, ADAPTER_ST), tensors);
    writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(cfg));
    return dir;
  };
  void c;
  const q = 'model.layers.0.self_attn.q_proj';
  const huge = (x: T): T => ({ ...x, values: x.values.map(() => 3e38) });
  return [
    {
      name: 'unmatched',
      dir: mk('unmatched', [t(peftKey('model.layers.7.self_attn.q_proj', 'lora_A.weight'), 'F32', [8, H]), t(peftKey('model.layers.7.self_attn.q_proj', 'lora_B.weight'), 'F32', [QD, 8])], { r: 8, lora_alpha: 8 }),
      expect: 'base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight',
    },
    {
      name: 'shape',
      dir: mk('shape', [t(peftKey(q, 'lora_A.weight'), 'F32', [8, H]), t(peftKey(q, 'lora_B.weight'), 'F32', [QD + 1, 8])], { r: 8, lora_alpha: 8 }),
      expect: `shape mismatch for ${q}.weight`,
    },
    {
      name: 'nan',
      dir: mk('nan', [huge(t(peftKey(q, 'lora_A.weight'), 'F32', [8, H])), huge(t(peftKey(q, 'lora_B.weight'), 'F32', [QD, 8]))], { r: 8, lora_alpha: 8 }),
      expect: `${q}.weight has NaN/Inf`,
    },
    {
      name: 'notsaved',
      dir: mk('notsaved', [t(peftKey('model.norm', 'weight'), 'F32', [H])], { r: 8, lora_alpha: 8 }),
      expect: 'base_model.model.model.norm.weight is not a LoRA weight',
    },
  ];
}

test('errors name the tensor, exit 1 and leave no output (CLI, library, Python worker)', async () => {
  await tsMerges(); // tsOut('D') is the destination that already exists, and the bytes to compare with
  const base = cases.D.base;
  for (const b of badAdapters()) {
    const out = path.join(root, `err-${b.name}`);
    const r = mstore(root, ['merge-lora', '--base', base, '--adapter', b.dir, '--out', out]);
    assert.is(r.code, 1, `${b.name}: ${r.stderr}`);
    assert.match(r.stderr, b.expect, b.name);
    assert.is(r.stderr.trim().split('\n').length, 1, `${b.name}: one line`);
    assert.not.ok(existsSync(out), `${b.name}: no output directory`);
    assert.is(readdirSync(root).filter((n) => n.startsWith('.')).length, 0, `${b.name}: no temporary directory left`);
    try {
      await mergeLora({ base, adapter: b.dir, out, threads: 1 });
      assert.unreachable(`${b.name}: library must throw`);
    } catch (e) {
      assert.instance(e, MstoreError, b.name);
      assert.match((e as Error).message, b.expect);
    }
    assert.not.ok(existsSync(out), `${b.name}: library removed its output`);
    const p = py([WORKER, '--base', base, '--adapter', b.dir, '--out', out, '--device', 'cpu']);
    assert.is(p.code, 1, `${b.name} (python): ${p.stderr}`);
    assert.match(p.stderr, b.expect.replace(' has NaN/Inf', ''), `${b.name} (python)`);
    assert.not.ok(existsSync(out), `${b.name} (python): no output directory`);
  }
  // a non-empty destination is refused before any work; an empty directory is filled
  const r = mstore(root, ['merge-lora', '--base', base, '--adapter', cases.D.adapter, '--out', tsOut('D')]);
  assert.is(r.code, 1);
  assert.match(r.stderr, 'already exists');
  const empty = path.join(root, 'empty-out');
  mkdirSync(empty);
  const ok = mstore(root, ['merge-lora', '--base', base, '--adapter', cases.D.adapter, '--out', empty]);
  assert.is(ok.code, 0, ok.stderr);
  assert.ok(readFileSync(path.join(empty, 'model.safetensors')).equals(readFileSync(path.join(tsOut('D'), 'model.safetensors'))));
});

test.run();
