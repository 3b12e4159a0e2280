/**
 * Learning curves (issue 4): every evolution layout read back from committed versions and the
 * workspace, summaries and the diff section, `mstore curves` in the terminal, as SVG, PNG, JSON.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { inflateSync } from 'node:zlib';
import path from 'node:path';
import { Store } from '../src/repo/store.js';
import { versionSide, workspaceSide } from '../src/ops/diff/sides.js';
import { readCurves, summarizeCurves, diffCurves, metricDirection, evolutionFiles, type Curve } from '../src/ops/diff/curves.js';
import { terminalChart, renderSvg, renderPng, pngFont } from '../src/web/charts.js';
import { MstoreError } from '../src/lib/errors.js';
import { cleanup, mstore, mstoreJson, tmpDir, treeDigest } from './helpers.js';

const STEPS = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
const loss1 = (s: number): number => 2 / (s / 10);
const loss2 = (s: number): number => 1.5 / (s / 10);
const acc = (s: number): number => 1 - 1 / (s / 10 + 1);

/** Replaces the model directory's curves and commits it through the CLI. */
function commitWith(ws: string, msg: string, files: Record<string, string>): string {
  for (const d of ['evolution', 'evolution_snapshots', 'trainer_state.json']) rmSync(path.join(ws, d), { recursive: true, force: true });
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(ws, p)), { recursive: true });
    writeFileSync(path.join(ws, p), text);
  }
  writeFileSync(path.join(ws, 'notes.txt'), msg); // every version differs
  return mstoreJson<{ version: string }>(ws, ['commit', '-m', msg]).version;
}

/** v001..v006, one layout each; v007 has no curves; v008 has a bad JSON file; v009 no loss. */
function buildStore(ws: string): void {
  assert.is(mstore(ws, ['init']).code, 0);
  writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ model_type: 'qwen3' }));
  // v001: one JSON record per step
  const perStep: Record<string, string> = {};
  for (const s of STEPS) perStep[`evolution/step_${String(s).padStart(5, '0')}.json`] = JSON.stringify({ step: s, loss: loss1(s), eval_accuracy: acc(s), note: 'text is not a curve' });
  assert.is(commitWith(ws, 'per-step files', perStep), 'v001');
  // v002: one JSON array, steps out of order, global_step as x
  const arr = [...STEPS].reverse().map((s) => ({ global_step: s, loss: loss2(s), learning_rate: 1e-4 }));
  assert.is(commitWith(ws, 'one array', { 'evolution/history.json': JSON.stringify(arr, null, 2) }), 'v002');
  // v003: JSONL with a blank line, epoch as fallback x
  const jsonl = STEPS.map((s) => JSON.stringify({ epoch: s / 100, loss: loss1(s) })).join('\n\n') + '\n';
  assert.is(commitWith(ws, 'jsonl', { 'evolution/train.jsonl': jsonl }), 'v003');
  // v004: Hugging Face trainer_state.json at the top level (Python's NaN included)
  const hist = [
    '{"epoch": 0.1, "grad_norm": NaN, "learning_rate": 5e-05, "loss": 2.5, "step": 10}',
    '{"epoch": 0.2, "grad_norm": 1.5, "learning_rate": 4e-05, "loss": 1.8, "step": 20}',
    '{"epoch": 0.2, "eval_loss": 1.9, "eval_runtime": 3.2, "step": 20}',
    '{"epoch": 0.3, "grad_norm": Infinity, "learning_rate": 3e-05, "loss": 1.2, "step": 30}',
    '{"epoch": 0.3, "total_flos": 1e15, "train_loss": 1.83, "train_runtime": 99.5, "step": 30}',
  ];
  const state = `{"best_metric": null, "global_step": 30, "log_history": [\n${hist.join(',\n')}\n], "note": "NaN in a string stays"}`;
  assert.is(commitWith(ws, 'trainer state', { 'trainer_state.json': state }), 'v004');
  // v005: the old directory name, nested; a log_history file and a non-record JSON in evolution/;
  // evolution/ wins over evolution_snapshots/ at a shared step
  assert.is(
    commitWith(ws, 'mixed', {
      'evolution_snapshots/run1/snap_001.json': JSON.stringify({ step: 1, loss: 9 }),
      'evolution_snapshots/run1/snap_002.json': JSON.stringify({ step: 2, loss: 8 }),
      'evolution/checkpoint-2/trainer_state.json': JSON.stringify({ log_history: [{ step: 2, loss: 7 }, { step: 3, loss: 6 }] }),
      'evolution/adapter_config.json': JSON.stringify({ r: 8, lora_alpha: 16 }),
      'evolution/readme.txt': '{ not read',
    }),
    'v005',
  );
  // v006: duplicate steps in one file: the last one wins
  assert.is(commitWith(ws, 'dups', { 'evolution/log.jsonl': ['{"step":1,"loss":3}', '{"step":2,"loss":2}', '{"step":1,"loss":2.5}'].join('\n') }), 'v006');
  assert.is(commitWith(ws, 'no curves', {}), 'v007');
  assert.is(commitWith(ws, 'bad json', { 'evolution/ok.json': '{"step": 1, "loss": 1}', 'evolution/bad.json': '{"step": 2, "loss": ' }), 'v008');
  // v009: no loss at all
  const evalOnly = STEPS.map((s) => JSON.stringify({ step: s, eval_accuracy: acc(s), bleu: 10 + s / 10 })).join('\n');
  assert.is(commitWith(ws, 'eval only', { 'evolution/eval.jsonl': evalOnly }), 'v009');
  // the workspace: jsonl again, different values, not committed
  rmSync(path.join(ws, 'evolution'), { recursive: true, force: true });
  mkdirSync(path.join(ws, 'evolution'));
  writeFileSync(path.join(ws, 'evolution', 'live.jsonl'), [5, 15, 25].map((s) => JSON.stringify({ step: s, loss: 1 / s })).join('\n'));
}

const pts = (xs: number[], f: (s: number) => number) => xs.map((s) => ({ step: s, value: f(s) }));

/**
 * The store every test reads (built once, never written: each test that writes works in its
 * own directory, and every test checks at its end that the workspace files are as built).
 */
let ws = '';
let built = new Map<string, string>();

test.before(() => {
  ws = tmpDir('mstore-curves-');
  buildStore(ws);
  built = treeDigest(ws);
});

/**
 * A test of this file: `fn`, then the check that the shared workspace is unchanged (inside the
 * test: an assertion in uvu's after.each is swallowed and silently stops the suite).
 */
function it(name: string, fn: () => unknown): void {
  test(name, async () => {
    await fn();
    assert.equal(treeDigest(ws), built, `${name}: the shared workspace is read-only`);
  });
}

test.after(() => {
  cleanup(ws);
});

/** A directory of the test's own for output files, removed after `fn`. */
function withScratch(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = tmpDir('mstore-curves-out-');
  return Promise.resolve()
    .then(() => fn(dir))
    .finally(() => cleanup(dir));
}

async function curvesOf(rev: string, dir = ws): Promise<Curve[]> {
  const store = await Store.find(dir);
  try {
    const side = rev === 'workspace' ? await workspaceSide(store) : await versionSide(store, rev);
    try {
      return await readCurves(side);
    } finally {
      await side.close();
    }
  } finally {
    await store.close();
  }
}

it('readCurves: per-step files, one array, jsonl, trainer_state.json, mixed dirs, duplicates, workspace', async () => {
  assert.equal(await curvesOf('v001'), [
    { metric: 'eval_accuracy', points: pts(STEPS, acc) },
    { metric: 'loss', points: pts(STEPS, loss1) },
  ]);
  assert.equal(await curvesOf('v002'), [
    { metric: 'learning_rate', points: pts(STEPS, () => 1e-4) },
    { metric: 'loss', points: pts(STEPS, loss2) },
  ]);
  assert.equal(await curvesOf('v003'), [{ metric: 'loss', points: STEPS.map((s) => ({ step: s / 100, value: loss1(s) })) }]);
  const v4 = await curvesOf('v004');
  assert.equal(
    v4.map((c) => c.metric),
    ['eval_loss', 'eval_runtime', 'grad_norm', 'learning_rate', 'loss', 'total_flos', 'train_loss', 'train_runtime'],
  );
  assert.equal(v4.find((c) => c.metric === 'loss')!.points, [{ step: 10, value: 2.5 }, { step: 20, value: 1.8 }, { step: 30, value: 1.2 }]);
  assert.equal(v4.find((c) => c.metric === 'eval_loss')!.points, [{ step: 20, value: 1.9 }]);
  assert.equal(v4.find((c) => c.metric === 'grad_norm')!.points, [{ step: 20, value: 1.5 }], 'NaN and Infinity are no points');
  assert.equal(await curvesOf('v005'), [{ metric: 'loss', points: [{ step: 1, value: 9 }, { step: 2, value: 7 }, { step: 3, value: 6 }] }]);
  assert.equal(await curvesOf('v006'), [{ metric: 'loss', points: [{ step: 1, value: 2.5 }, { step: 2, value: 2 }] }]);
  assert.equal(await curvesOf('v007'), []);
  assert.equal(await curvesOf('workspace'), [{ metric: 'loss', points: pts([5, 15, 25], (s) => 1 / s) }]);
});

it('readCurves: bad JSON is an MstoreError naming the version and file (jsonl: the line)', async () => {
  try {
    await curvesOf('v008');
    assert.unreachable('bad JSON read');
  } catch (e) {
    assert.instance(e, MstoreError);
    assert.is((e as MstoreError).code, 'EBADINPUT');
    assert.match((e as Error).message, /^v008:evolution\/bad\.json: bad JSON \(/);
    assert.not.match((e as Error).message, /\n/);
  }
  // a workspace of its own: a copy of the shared one with a broken JSONL file
  const own = tmpDir('mstore-curves-broken-');
  try {
    cpSync(ws, own, { recursive: true });
    writeFileSync(path.join(own, 'evolution', 'broken.jsonl'), '{"step": 1, "loss": 1}\n{"step": 2,\n');
    await curvesOf('workspace', own);
    assert.unreachable('bad JSONL read');
  } catch (e) {
    assert.match((e as Error).message, /^workspace:evolution\/broken\.jsonl:2: bad JSON/);
  } finally {
    cleanup(own);
  }
});

it('evolutionFiles: reading order and what is read', () => {
  assert.equal(
    evolutionFiles(['evolution/b.json', 'a.json', 'evolution/a.jsonl', 'evolution_snapshots/z.json', 'trainer_state.json', 'evolution/x.txt', 'x/trainer_state.json', 'evolutionary/a.json']),
    ['trainer_state.json', 'evolution_snapshots/z.json', 'evolution/a.jsonl', 'evolution/b.json'],
  );
});

it('metricDirection: lower, higher, unknown', () => {
  for (const m of ['loss', 'eval_loss', 'train/loss', 'perplexity', 'eval_ppl', 'error', 'error_rate', 'wer', 'eval_cer', 'mse', 'val_mae', 'evalLoss']) assert.is(metricDirection(m), 'lower', m);
  for (const m of ['accuracy', 'eval_accuracy', 'acc_norm', 'f1', 'macro_f1', 'bleu', 'rouge1', 'rougeL', 'rougeLsum', 'exact_match', 'eval_exact_match', 'auc', 'roc_auc', 'precision', 'recall', 'reward', 'mean_reward']) {
    assert.is(metricDirection(m), 'higher', m);
  }
  for (const m of ['learning_rate', 'grad_norm', 'epoch', 'total_flos', 'lossy_accuracy_loss_acc', 'glossary', 'accuracy_loss']) assert.is(metricDirection(m), undefined, m);
});

it('summarizeCurves and diffCurves: final, best and step of best per side', async () => {
  const v1 = await curvesOf('v001');
  const v2 = await curvesOf('v002');
  assert.equal(summarizeCurves(v1), [
    { metric: 'eval_accuracy', better: 'higher', points: 10, final: { step: 100, value: acc(100) }, best: { step: 100, value: acc(100) } },
    { metric: 'loss', better: 'lower', points: 10, final: { step: 100, value: loss1(100) }, best: { step: 100, value: loss1(100) } },
  ]);
  // best is the first step of the best value; no best without a direction
  const s = summarizeCurves([
    { metric: 'loss', points: [{ step: 1, value: 3 }, { step: 2, value: 1 }, { step: 3, value: 1 }, { step: 4, value: 2 }] },
    { metric: 'lr', points: [{ step: 1, value: 0.1 }] },
  ]);
  assert.equal(s[0], { metric: 'loss', better: 'lower', points: 4, final: { step: 4, value: 2 }, best: { step: 2, value: 1 } });
  assert.equal(s[1], { metric: 'lr', better: undefined, points: 1, final: { step: 1, value: 0.1 } });
  const d = diffCurves(v1, v2);
  assert.equal(d.map((x) => x.metric), ['eval_accuracy', 'learning_rate', 'loss']);
  assert.ok(d[0].a && !d[0].b);
  assert.ok(!d[1].a && d[1].b);
  assert.equal(d[2].a?.best, { step: 100, value: loss1(100) });
  assert.equal(d[2].b?.final, { step: 100, value: loss2(100) });
  // as JSON (diff --json embeds it): absent sides and unknown directions are left out
  assert.equal(JSON.parse(JSON.stringify(d[1])), { metric: 'learning_rate', b: { metric: 'learning_rate', points: 10, final: { step: 100, value: 1e-4 } } });
});

/** Well-formed XML: every tag closed in order, attributes quoted, no stray `<` or `&`. */
function assertWellFormed(xml: string): void {
  const stack: string[] = [];
  const re = /<!--[\s\S]*?-->|<\?[\s\S]*?\?>|<(\/?)([A-Za-z_][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/?)>|([^<]+)|(<)/g;
  let m: RegExpExecArray | null;
  let root = 0;
  while ((m = re.exec(xml))) {
    const [, close, name, , selfClose, text, stray] = m;
    if (stray) assert.unreachable(`stray '<' at ${m.index}: ${xml.slice(m.index, m.index + 40)}`);
    if (text !== undefined) {
      assert.not.match(text.replace(/&(?:[a-z]+|#\d+|#x[0-9a-f]+);/gi, ''), /&/, `bare & in text at ${m.index}`);
      if (!stack.length) assert.is(text.trim(), '', 'text outside the root element');
      continue;
    }
    if (!name) continue;
    if (close) {
      assert.is(stack.pop(), name, `</${name}> at ${m.index}`);
    } else if (!selfClose) {
      if (!stack.length) root++;
      stack.push(name);
    } else if (!stack.length) root++;
  }
  assert.equal(stack, [], 'unclosed elements');
  assert.is(root, 1, 'one root element');
}

/** The line marks vega draws: `<path ... aria-roledescription="line mark" d="...">`. */
function linePaths(svg: string): { label: string; d: string }[] {
  return [...svg.matchAll(/<path\b[^>]*aria-roledescription="line mark"[^>]*>/g)].map((m) => ({
    label: /aria-label="([^"]*)"/.exec(m[0])?.[1] ?? '',
    d: /\sd="([^"]*)"/.exec(m[0])?.[1] ?? '',
  }));
}

const legendTexts = (svg: string): string[] =>
  [...svg.matchAll(/<g class="mark-text role-legend-label"[^>]*>([\s\S]*?)<\/g>/g)].flatMap((m) => [...m[1].matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((t) => t[1]));

it('curves --svg: a well-formed SVG, both versions in the legend, one line per version with every point', () =>
  withScratch((scratch) => {
    const file = path.join(scratch, 'out.svg');
    const r = mstore(ws, ['curves', 'v001', 'v002', '--svg', file]);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, 'wrote');
    const svg = readFileSync(file, 'utf8');
    assert.ok(svg.startsWith('<svg'), svg.slice(0, 40));
    assertWellFormed(svg);
    assert.equal(legendTexts(svg), ['v001', 'v002']);
    const lines = linePaths(svg);
    assert.is(lines.length, 2);
    assert.match(lines[0].label, /version: v001$/);
    assert.match(lines[1].label, /version: v002$/);
    for (const l of lines) {
      // M x,y then one L x,y per further point
      const cmds = l.d.match(/[ML]-?[\d.]+,-?[\d.]+/g) ?? [];
      assert.is(cmds.length, STEPS.length, l.d);
      const ys = cmds.map((c) => Number(c.split(',')[1]));
      // loss falls, so the line goes down the page (SVG y grows downwards)
      for (let i = 1; i < ys.length; i++) assert.ok(ys[i] > ys[i - 1], `y ${ys[i]} after ${ys[i - 1]}`);
    }
    // v002 (1.5/x) lies below v001 (2/x) at every step: larger y on the page
    const y = (d: string) => (d.match(/[ML]-?[\d.]+,-?[\d.]+/g) ?? []).map((c) => Number(c.split(',')[1]));
    const [a, b] = [y(lines[0].d), y(lines[1].d)];
    a.forEach((v, i) => assert.ok(b[i] > v));
    assert.match(svg, />loss: v001 vs v002</);
    // deterministic: the same bytes again; no temporary file left
    assert.is(mstore(ws, ['curves', 'v001', 'v002', '--svg', file]).code, 0);
    assert.is(readFileSync(file, 'utf8'), svg);
    assert.equal(readdirSync(scratch).filter((n) => n.includes('tmp')), []);
  }));

it('renderSvg: same input, same bytes, in one process too (no counters or ids)', async () => {
  const series = [{ label: 'a&b <x>', points: pts(STEPS, loss1) }];
  const one = await renderSvg(series, { title: 't', metric: 'loss' });
  const two = await renderSvg(series, { title: 't', metric: 'loss' });
  assert.is(one, two);
  assertWellFormed(one);
  assert.equal(legendTexts(one), ['a&amp;b &lt;x&gt;']);
  assert.not.match(one, /\bid="/);
});

/** PNG: signature, IHDR, every chunk's CRC, IDAT inflating to height rows of width pixels. */
function checkPng(buf: Buffer): { width: number; height: number } {
  assert.equal([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.is(buf.toString('latin1', 12, 16), 'IHDR');
  const width = buf.readUInt32BE(16);
  const height = buf.readUInt32BE(20);
  const bitDepth = buf[24];
  const colorType = buf[25];
  assert.ok(width > 0 && height > 0);
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[colorType as 0 | 2 | 4 | 6];
  assert.ok(channels && bitDepth === 8, `colour type ${colorType}, depth ${bitDepth}`);
  const idat: Buffer[] = [];
  let o = 8;
  let last = '';
  while (o < buf.length) {
    const len = buf.readUInt32BE(o);
    last = buf.toString('latin1', o + 4, o + 8);
    if (last === 'IDAT') idat.push(buf.subarray(o + 8, o + 8 + len));
    o += 12 + len;
  }
  assert.is(o, buf.length);
  assert.is(last, 'IEND');
  assert.is(inflateSync(Buffer.concat(idat)).length, height * (1 + width * channels!));
  return { width, height };
}

it('curves --png: a valid PNG; text is drawn when a font is found', () =>
  withScratch(async (scratch) => {
    const file = path.join(scratch, 'out.png');
    const r = mstore(ws, ['curves', 'v001', 'v002', '--png', file]);
    assert.is(r.code, 0, r.stderr);
    const { width, height } = checkPng(readFileSync(file));
    assert.ok(width > 600 && height > 300, `${width}x${height}`);
    // Same geometry, one glyph differs: the pixels differ only if text is rendered.
    const a = await renderPng([{ label: 'v001', points: pts(STEPS, loss1) }], { title: 't', metric: 'loss', scale: 1 });
    const b = await renderPng([{ label: 'v007', points: pts(STEPS, loss1) }], { title: 't', metric: 'loss', scale: 1 });
    checkPng(a);
    if (pngFont()) assert.not.equal(a, b, 'legend text rendered');
    else console.warn('curves.test: no known font file here; PNG text not checked');
  }));

it('curves --svg/--png: usage error together; output file in a missing directory fails with one line', () =>
  withScratch((scratch) => {
    const r = mstore(ws, ['curves', 'v001', '--svg', 'a.svg', '--png', 'a.png']);
    assert.is(r.code, 2);
    const r2 = mstore(ws, ['curves', 'v001', '--svg', path.join(scratch, 'nope', 'a.svg')]);
    assert.is(r2.code, 1);
    assert.is(r2.stderr.trim().split('\n').length, 1, r2.stderr);
  }));

it('curves --json: metric chosen, every curve and summary per version', () => {
  const j = mstoreJson<{
    metric: string;
    versions: { rev: string; label: string; commit: string | null; curves: Curve[]; summaries: { metric: string; best?: { step: number } }[] }[];
  }>(ws, ['curves', 'v001', 'workspace']);
  assert.is(j.metric, 'loss');
  assert.equal(j.versions.map((v) => [v.rev, v.label]), [['v001', 'v001'], ['workspace', 'workspace']]);
  assert.is(j.versions[0].commit?.length, 40);
  assert.is(j.versions[1].commit, null);
  assert.equal(j.versions[0].curves.map((c) => c.metric), ['eval_accuracy', 'loss']);
  assert.equal(j.versions[0].summaries.map((s) => s.metric), ['eval_accuracy', 'loss']);
  assert.equal(j.versions[1].summaries[0], { metric: 'loss', better: 'lower', points: 3, final: { step: 25, value: 1 / 25 }, best: { step: 25, value: 1 / 25 } });
  const k = mstoreJson<{ metric: string; versions: { curves: Curve[] }[] }>(ws, ['curves', 'v001', '--metric', 'eval_accuracy']);
  assert.is(k.metric, 'eval_accuracy');
  assert.equal(k.versions[0].curves.map((c) => c.metric), ['eval_accuracy']);
  // the default: loss when all have it, else the first metric all have, else loss, else the first
  assert.is(mstoreJson<{ metric: string }>(ws, ['curves', 'v004', 'v002']).metric, 'loss');
  assert.is(mstoreJson<{ metric: string }>(ws, ['curves', 'v009', 'v001']).metric, 'eval_accuracy');
  assert.is(mstoreJson<{ metric: string }>(ws, ['curves', 'v009', 'v002']).metric, 'loss');
  assert.is(mstoreJson<{ metric: string }>(ws, ['curves', 'v009']).metric, 'bleu');
});

it('curves in the terminal: chart, step axis, legend, summaries; plain without a TTY', () => {
  const r = mstore(ws, ['curves', 'v001', 'v002']);
  assert.is(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  assert.is(lines[0], 'loss (lower is better)');
  assert.ok(lines.some((l) => /── v001 +── v002$/.test(l)), r.stdout);
  assert.ok(lines.some((l) => /^\s+10\s+step\s+100$/.test(l)), r.stdout);
  assert.match(r.stdout, `v001: final 0.2 at step 100, best 0.2 at step 100, 10 points`);
  assert.match(r.stdout, `v002: final 0.15 at step 100, best 0.15 at step 100, 10 points`);
  assert.not.match(r.stdout, /\x1b\[/);
  assert.match(r.stdout, /2\.0+ ┼/); // the top row: v001's first value on the axis
  // a version missing the metric: a warning, the others are drawn
  const w = mstore(ws, ['curves', 'v002', 'v001', '--metric', 'eval_accuracy']);
  assert.is(w.code, 0, w.stderr);
  assert.match(w.stderr, "v002 has no curve 'eval_accuracy'");
  assert.match(w.stdout, 'eval_accuracy (higher is better)');
});

it('terminalChart: colour only when asked; series over different step ranges; one point', () => {
  const a = { label: 'early', points: pts([0, 10, 20, 30, 40, 50], (s) => 100 - s) };
  const b = { label: 'late', points: pts([50, 60, 70, 80, 90, 100], (s) => 100 - s / 2) };
  const plain = terminalChart([a, b], { width: 21, height: 10, color: false });
  assert.not.match(plain, /\x1b\[/);
  const rows = plain.split('\n');
  const body = rows.slice(0, -2);
  const axisCol = body[0].search(/[┤┼]/);
  assert.ok(axisCol > 0, plain);
  // early covers columns 0..10, late 10..20: left half of the plot has early, right half late
  const leftCells = body.map((l) => l.slice(axisCol + 1, axisCol + 11)).join('');
  const rightCells = body.map((l) => l.slice(axisCol + 11, axisCol + 21)).join('');
  assert.match(leftCells, /[─╮╰│╯╭]/);
  assert.match(rightCells, /[─╮╰│╯╭]/);
  // the late series sits at 75..50 and the early one at 100..50: the top row's right half is empty
  assert.is(body[0].slice(axisCol + 11).trim(), '', plain);
  assert.match(rows[rows.length - 2], /^\s+0\s+step\s+100$/);
  assert.match(rows[rows.length - 1], /── early {3}── late$/);
  const colored = terminalChart([a, b], { width: 21, height: 10, color: true });
  assert.match(colored, /\x1b\[\d+m/);
  assert.is(colored.replace(/\x1b\[\d+m/g, ''), plain);
  const one = terminalChart([{ label: 'x', points: [{ step: 5, value: 1 }] }], { color: false });
  assert.match(one, /┼/);
  assert.match(one, /── x$/);
  const dot = terminalChart([a, { label: 'p', points: [{ step: 70, value: 60 }] }], { width: 21, height: 10, color: false });
  assert.match(dot, /●/);
});

it('curves errors: no curves, unknown metric, bad JSON, unknown revision: exit 1, one line', () => {
  const none = mstore(ws, ['curves', 'v001', 'v007']);
  assert.is(none.code, 1);
  assert.equal(none.stderr.trim().split('\n').length, 1, none.stderr);
  assert.match(none.stderr, /^mstore: error: v007 has no learning curves/);
  const latest = mstore(ws, ['curves', 'latest~2']);
  assert.is(latest.stderr, 'mstore: error: latest~2 (v007) has no learning curves (no step records in evolution/, evolution_snapshots/ or trainer_state.json; see docs/curves.md)\n');
  const unknown = mstore(ws, ['curves', 'v001', 'v002', '--metric', 'bleu']);
  assert.is(unknown.code, 1);
  assert.is(unknown.stderr, "mstore: error: no curve 'bleu' in v001, v002; available: eval_accuracy, learning_rate, loss\n");
  const bad = mstore(ws, ['curves', 'v008']);
  assert.is(bad.code, 1);
  assert.is(bad.stderr.trim().split('\n').length, 1);
  assert.match(bad.stderr, 'v008:evolution/bad.json: bad JSON');
  const rev = mstore(ws, ['curves', 'v042']);
  assert.is(rev.code, 1);
  assert.match(rev.stderr, "unknown revision 'v042'");
  assert.is(mstore(ws, ['curves']).code, 2);
});

it('curves --help has examples', () => {
  const r = mstore(ws, ['curves', '--help']);
  assert.is(r.code, 0);
  assert.match(r.stdout, 'Examples:');
  assert.match(r.stdout, 'curves v001 v002 --svg');
  assert.ok(existsSync(ws));
});

test.run();
