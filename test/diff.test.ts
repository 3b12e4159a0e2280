/**
 * Issue 4: `diff` (every section, text and --json), `label` (git notes), `log --metrics/--status`,
 * through the real CLI and real git.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cleanup, git, mstore, mstoreJson, tmpDir, writeSafetensors, type TensorSpec } from './helpers.js';

interface Diff {
  a: { label: string; commit: string | null };
  b: { label: string; commit: string | null };
  identical: boolean;
  metadata: { field: string; a: unknown; b: unknown }[];
  params: { changed: { key: string; a: unknown; b: unknown }[]; added: { key: string; b: unknown }[]; removed: { key: string; a: unknown }[] };
  metrics: { name: string; a: unknown; b: unknown; delta: number | null; relative: number | null; better: string | null; verdict: string | null }[];
  files: {
    added: { path: string; size: number }[];
    removed: { path: string; size: number }[];
    modified: { path: string; sizeA: number; sizeB: number }[];
    renamed: { from: string; to: string; size: number; oid: string }[];
    unchanged: number;
  };
  tensors: { path: string; kind: string; counts: { added: number; removed: number; changed: number; unchanged: number }; bytesChanged: number; tensors: { name: string; status: string }[] }[];
  text: ({ path: string; format: 'json'; changes: { path: string; type: string; a?: unknown; b?: unknown }[] } | { path: string; format: 'unified'; patch: string })[];
  curves: { metric: string; a?: { final?: { step: number; value: number } }; b?: { final?: { step: number; value: number } } }[];
}

function ok(cwd: string, args: string[]): string {
  const r = mstore(cwd, args);
  assert.is(r.code, 0, `mstore ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

const tensors = (seeds: number[]): TensorSpec[] => seeds.map((s, i) => ({ name: `layers.${i}.weight`, dtype: 'BF16', shape: [256, 1024], seed: s }));

/** v001 and v002 differ in every dimension the diff has a section for. */
function fixture(): string {
  const ws = tmpDir('mstore-diff-');
  ok(ws, ['init']);
  mkdirSync(path.join(ws, 'evolution'));
  mkdirSync(path.join(ws, 'adapter'));
  writeSafetensors(path.join(ws, 'model.safetensors'), tensors([1, 2, 3, 4, 5, 6]));
  writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ hidden_size: 1024, rope: { theta: 10000 }, layers: [1, 2] }, null, 2));
  writeFileSync(path.join(ws, 'notes.txt'), 'line one\nline two\nline three\n');
  writeFileSync(path.join(ws, 'adapter', 'old_name.bin'), Buffer.alloc(5000, 7));
  writeFileSync(path.join(ws, 'removed.txt'), 'bye\n');
  writeFileSync(path.join(ws, 'evolution', 'curve.jsonl'), [1, 2, 3].map((s) => JSON.stringify({ step: s * 100, loss: 3 / s, accuracy: 0.2 * s })).join('\n') + '\n');
  writeFileSync(path.join(ws, 'params1.json'), JSON.stringify({ lr: 0.0002, lora: { r: 8, alpha: 16 }, epochs: 3 }));
  writeFileSync(path.join(ws, 'metrics1.json'), JSON.stringify({ loss: 1.234, accuracy: 0.61, perplexity: 9, throughput: 100 }));
  writeFileSync(path.join(ws, '.mstoreignore'), 'params*.json\nmetrics*.json\n');
  ok(ws, ['commit', '-m', 'first', '--params', 'params1.json', '--metrics', 'metrics1.json', '--status', 'completed', '--meta', 'dataset=math_10k']);
  // v002
  writeSafetensors(path.join(ws, 'model.safetensors'), [...tensors([1, 20, 3, 4, 50, 6]), { name: 'extra.bias', dtype: 'F32', shape: [1024], seed: 99 }]);
  writeFileSync(path.join(ws, 'config.json'), JSON.stringify({ hidden_size: 2048, rope: { theta: 10000 }, layers: [1, 2, 3], new_key: true }, null, 2));
  writeFileSync(path.join(ws, 'notes.txt'), 'line one\nline 2\nline three\n');
  renameSync(path.join(ws, 'adapter', 'old_name.bin'), path.join(ws, 'adapter', 'new_name.bin'));
  rmSync(path.join(ws, 'removed.txt'));
  writeFileSync(path.join(ws, 'added.txt'), 'hello\n');
  writeFileSync(path.join(ws, 'evolution', 'curve.jsonl'), [1, 2, 3, 4].map((s) => JSON.stringify({ step: s * 100, loss: 2 / s, accuracy: 0.22 * s })).join('\n') + '\n');
  writeFileSync(path.join(ws, 'params2.json'), JSON.stringify({ lr: 0.0001, lora: { r: 16, alpha: 16 }, warmup: 100 }));
  writeFileSync(path.join(ws, 'metrics2.json'), JSON.stringify({ loss: 0.987, accuracy: 0.7, perplexity: 11, throughput: 90 }));
  ok(ws, ['commit', '-m', 'second', '--params', 'params2.json', '--metrics', 'metrics2.json', '--status', 'draft', '--meta', 'dataset=reasoning_5k']);
  return ws;
}

test('diff v001 v002: metadata, params, metrics with direction, files with renames, tensors, JSON and text, curves', () => {
  const ws = fixture();
  try {
    const r = mstoreJson<Diff>(ws, ['diff', 'v001', 'v002']);
    assert.is(r.identical, false);
    assert.is(r.a.label, 'v001');
    assert.is(r.b.label, 'v002');
    const meta = Object.fromEntries(r.metadata.map((m) => [m.field, [m.a, m.b]]));
    assert.equal(meta.description, ['first', 'second']);
    assert.equal(meta.status, ['completed', 'draft']);
    assert.equal(meta['meta.dataset'], ['math_10k', 'reasoning_5k']);
    // params: nested keys flattened
    assert.equal(r.params.changed, [
      { key: 'lora.r', a: 8, b: 16 },
      { key: 'lr', a: 0.0002, b: 0.0001 },
    ]);
    assert.equal(r.params.added, [{ key: 'warmup', b: 100 }]);
    assert.equal(r.params.removed, [{ key: 'epochs', a: 3 }]);
    // metrics: absolute and relative change, direction from the name
    const m = Object.fromEntries(r.metrics.map((x) => [x.name, x]));
    assert.ok(Math.abs(m.loss.delta! - -0.247) < 1e-9);
    assert.ok(Math.abs(m.loss.relative! - -0.247 / 1.234) < 1e-9);
    assert.is(m.loss.better, 'lower');
    assert.is(m.loss.verdict, 'improved');
    assert.is(m.accuracy.better, 'higher');
    assert.is(m.accuracy.verdict, 'improved');
    assert.is(m.perplexity.verdict, 'worse');
    assert.is(m.throughput.better, null);
    assert.is(m.throughput.verdict, null);
    // files
    assert.equal(r.files.added.map((f) => f.path), ['added.txt']);
    assert.equal(r.files.removed.map((f) => f.path), ['removed.txt']);
    assert.equal(r.files.renamed, [{ from: 'adapter/old_name.bin', to: 'adapter/new_name.bin', size: 5000, oid: r.files.renamed[0].oid }]);
    assert.equal(r.files.modified.map((f) => f.path).sort(), ['config.json', 'evolution/curve.jsonl', 'model.safetensors', 'notes.txt']);
    // tensors: 2 changed, 1 added, 4 unchanged, from headers and chunk lists
    assert.is(r.tensors.length, 1);
    assert.equal(r.tensors[0].counts, { added: 1, removed: 0, changed: 2, unchanged: 4 });
    assert.equal(r.tensors[0].tensors.filter((t) => t.status === 'changed').map((t) => t.name), ['layers.1.weight', 'layers.4.weight']);
    // config.json structurally
    const cfg = r.text.find((t) => t.path === 'config.json');
    assert.ok(cfg && cfg.format === 'json');
    if (cfg?.format === 'json') {
      assert.equal(cfg.changes.find((c) => c.path === '.hidden_size'), { path: '.hidden_size', type: 'changed', a: 1024, b: 2048 });
      assert.equal(cfg.changes.find((c) => c.path === '.new_key'), { path: '.new_key', type: 'added', b: true });
      assert.equal(cfg.changes.find((c) => c.path === '.layers[2]'), { path: '.layers[2]', type: 'added', b: 3 });
      assert.not.ok(cfg.changes.some((c) => c.path.startsWith('.rope')), 'unchanged nested keys are not reported');
    }
    const notes = r.text.find((t) => t.path === 'notes.txt');
    assert.ok(notes && notes.format === 'unified');
    if (notes?.format === 'unified') {
      assert.match(notes.patch, /\n-line two\n\+line 2\n/);
    }
    // curves: final values per metric
    const loss = r.curves.find((c) => c.metric === 'loss');
    assert.equal(loss?.a?.final, { step: 300, value: 1 });
    assert.equal(loss?.b?.final, { step: 400, value: 0.5 });

    // The text rendering says the same things, one section each.
    const text = ok(ws, ['diff', 'v001', 'v002']);
    assert.match(text, /loss 1\.234 → 0\.987  −0\.247 \(−20(\.0\d*)? %\)/);
    assert.match(text, /adapter\/old_name\.bin → adapter\/new_name\.bin/);
    assert.match(text, /model\.safetensors: 2 changed, 1 added, 0 removed, 4 unchanged/);
    assert.match(text, /-line two\n\+line 2/);
    assert.match(text, /lora\.r: 8 → 16/);
    // --stat: the file summary only
    const stat = ok(ws, ['diff', 'v001', 'v002', '--stat']);
    assert.match(stat, /files: 1 added, 1 removed, 4 modified, 1 renamed/);
    assert.not.match(stat, /tensors:/);
    // --tensors lists them
    assert.match(ok(ws, ['diff', 'v001', 'v002', '--tensors']), /~ layers\.1\.weight/);
    // paths restrict the comparison
    const only = mstoreJson<Diff>(ws, ['diff', 'v001', 'v002', 'notes.txt']);
    assert.equal(only.files.modified.map((f) => f.path), ['notes.txt']);
    assert.is(only.tensors.length, 0);
  } finally {
    cleanup(ws);
  }
});

test('diff of a version against itself: no difference, exit 0; against the workspace', () => {
  const ws = fixture();
  try {
    const r = mstore(ws, ['diff', 'v002', 'v002']);
    assert.is(r.code, 0);
    assert.match(r.stdout, /no difference between v002 and v002/);
    assert.is(mstoreJson<Diff>(ws, ['diff', 'v002', 'v002']).identical, true);
    // the workspace equals v002 right after the commit
    assert.is(mstoreJson<Diff>(ws, ['diff', 'v002']).identical, true);
    writeFileSync(path.join(ws, 'notes.txt'), 'changed in the workspace\n');
    const w = mstoreJson<Diff>(ws, ['diff', 'v002']);
    assert.is(w.b.label, 'workspace');
    assert.equal(w.files.modified.map((f) => f.path), ['notes.txt']);
    assert.equal(w.params, { changed: [], added: [], removed: [] }, 'the workspace has no params to compare');
    // an uncommitted tensor change shows in the tensor section
    writeSafetensors(path.join(ws, 'model.safetensors'), [...tensors([1, 20, 3, 4, 50, 7]), { name: 'extra.bias', dtype: 'F32', shape: [1024], seed: 99 }]);
    const t = mstoreJson<Diff>(ws, ['diff', 'v002', 'workspace']);
    assert.equal(t.tensors[0].tensors.filter((x) => x.status === 'changed').map((x) => x.name), ['layers.5.weight']);
  } finally {
    cleanup(ws);
  }
});

test('label: git notes that real git shows; status in log and show; log --metrics and --status', () => {
  const ws = fixture();
  try {
    ok(ws, ['label', 'v002', 'status=training', 'eval_gsm8k=0.71']);
    const notes = git(path.join(ws, '.mstore/git'), ['notes', 'show', 'v002^{commit}']);
    assert.is(notes.code, 0, notes.stderr);
    assert.equal(JSON.parse(notes.stdout), { eval_gsm8k: '0.71', status: 'training' });
    assert.is(git(path.join(ws, '.mstore/git'), ['fsck', '--strict']).code, 0);
    // history is kept: a second change is a second notes commit
    ok(ws, ['label', 'v002', '--unset', 'eval_gsm8k']);
    assert.is(git(path.join(ws, '.mstore/git'), ['rev-list', '--count', 'refs/notes/commits']).stdout.trim(), '2');
    assert.equal(JSON.parse(git(path.join(ws, '.mstore/git'), ['notes', 'show', 'v002^{commit}']).stdout), { status: 'training' });
    // the label's status wins over the commit's, in show and log
    assert.is(mstoreJson<{ status: string }>(ws, ['show', 'v002']).status, 'training');
    assert.match(ok(ws, ['show', 'v002']), /Status: +\[training\] \(was draft at commit\)/);
    const log = mstoreJson<{ version: string; status: string }[]>(ws, ['log']);
    assert.equal(log.map((e) => [e.version, e.status]), [['v002', 'training'], ['v001', 'completed']]);
    assert.equal(mstoreJson<{ version: string }[]>(ws, ['log', '--status', 'completed']).map((e) => e.version), ['v001']);
    const cols = ok(ws, ['log', '--metrics', 'loss,accuracy']);
    assert.match(cols, /v002 .* 0\.987 +0\.7 /);
    assert.match(cols, /v001 .* 1\.234 +0\.61 /);
    // bad input: one line, exit 2, nothing written
    const before = git(path.join(ws, '.mstore/git'), ['rev-parse', 'refs/notes/commits']).stdout;
    const bad = mstore(ws, ['label', 'v002', 'status=bogus']);
    assert.is(bad.code, 2);
    assert.match(bad.stderr, /invalid status 'bogus'/);
    assert.is(mstore(ws, ['log', '--status', 'nope']).code, 2);
    assert.is(git(path.join(ws, '.mstore/git'), ['rev-parse', 'refs/notes/commits']).stdout, before);
    // labels are not versions: verify and gc do not mistake the notes commit for one
    assert.is(mstore(ws, ['verify', '--all']).code, 0);
    assert.is(mstoreJson<{ ok: boolean }>(ws, ['fsck']).ok, true);
    // the ref history records label changes
    assert.ok(mstoreJson<{ ref: string; reason: string }[]>(ws, ['reflog', 'refs/notes/commits']).every((e) => e.reason === 'label'));
  } finally {
    cleanup(ws);
  }
});

test.run();
