import type { CommandModule } from 'yargs';
import { diffSides, type DiffResult } from '../../ops/diff/diff.js';
import { versionSide, workspaceSide, type Side } from '../../ops/diff/sides.js';
import type { TensorDiff } from '../../ops/diff/tensors.js';
import { dim, formatBytes, green, handler, out, printJson, red, withStore, yellow } from '../ui/output.js';

interface Args {
  a: string;
  b?: string;
  paths: string[];
  json: boolean;
  stat: boolean;
  tensors: boolean;
  stats: boolean;
}

const show = (v: unknown): string =>
  v === undefined ? '(none)' : typeof v === 'string' ? v : typeof v === 'number' ? String(Number(v.toPrecision(6))) : JSON.stringify(v);
const num = (v: number): string => String(Number(v.toPrecision(4)));
const signed = (v: number): string => (v > 0 ? `+${num(v)}` : v < 0 ? `−${num(-v)}` : '0');

function renderTensors(t: TensorDiff, list: boolean): void {
  const c = t.counts;
  out(`  ${t.path}${t.kind === 'sharded' ? ' (sharded)' : ''}: ${c.changed} changed, ${c.added} added, ${c.removed} removed, ${c.unchanged} unchanged; ${formatBytes(t.bytesChanged)} of ${formatBytes(t.bytesTotalB)} changed`);
  if (!list) return;
  for (const x of t.tensors) {
    if (x.status === 'unchanged') continue;
    const shape = (s?: number[]): string => (s ? `[${s.join(',')}]` : '');
    const type = x.status === 'changed' && (x.dtypeA !== x.dtypeB || shape(x.shapeA) !== shape(x.shapeB)) ? `  ${x.dtypeA}${shape(x.shapeA)} → ${x.dtypeB}${shape(x.shapeB)}` : `  ${x.dtypeB ?? x.dtypeA}${shape(x.shapeB ?? x.shapeA)}`;
    const stats = x.relNorm !== undefined ? `  rel.norm ${num(x.relNorm)}${x.maxAbsDiff !== undefined ? ` max|Δ| ${num(x.maxAbsDiff)}` : ''}` : '';
    const mark = x.status === 'added' ? green('+') : x.status === 'removed' ? red('-') : yellow('~');
    out(`    ${mark} ${x.name}${type}  ${formatBytes(x.changedBytes)}${stats}`);
  }
}

function render(r: DiffResult, a: Args): void {
  if (r.identical) {
    out(`no difference between ${r.a.label} and ${r.b.label}`);
    return;
  }
  out(dim(`diff ${r.a.label} ${r.b.label}`));
  if (r.metadata.length) {
    out('metadata:');
    for (const m of r.metadata) out(`  ${m.field}: ${show(m.a)} → ${show(m.b)}`);
  }
  const p = r.params;
  if (p.changed.length + p.added.length + p.removed.length) {
    out('params:');
    for (const c of p.changed) out(`  ${yellow('~')} ${c.key}: ${show(c.a)} → ${show(c.b)}`);
    for (const c of p.added) out(`  ${green('+')} ${c.key}: ${show(c.b)}`);
    for (const c of p.removed) out(`  ${red('-')} ${c.key}: ${show(c.a)}`);
  }
  if (r.metrics.length) {
    out('metrics:');
    for (const m of r.metrics) {
      const pct = (r: number): string => `${r > 0 ? '+' : r < 0 ? '−' : ''}${Math.abs(r * 100).toFixed(1)} %`;
      const change = m.delta !== null ? `  ${signed(m.delta)}${m.relative !== null ? ` (${pct(m.relative)})` : ''}` : '';
      const verdict = m.verdict === 'improved' ? green(` better (${m.better} is better)`) : m.verdict === 'worse' ? red(` worse (${m.better} is better)`) : '';
      out(`  ${m.name} ${show(m.a)} → ${show(m.b)}${change}${verdict}`);
    }
  }
  const f = r.files;
  if (f.added.length + f.removed.length + f.modified.length + f.renamed.length) {
    out(`files: ${f.added.length} added, ${f.removed.length} removed, ${f.modified.length} modified, ${f.renamed.length} renamed, ${f.unchanged} unchanged`);
    for (const x of f.added) out(`  ${green('+')} ${x.path}  ${formatBytes(x.size)}`);
    for (const x of f.removed) out(`  ${red('-')} ${x.path}  ${formatBytes(x.size)}`);
    for (const x of f.modified) out(`  ${yellow('~')} ${x.path}  ${formatBytes(x.sizeA)} → ${formatBytes(x.sizeB)}${x.modeA !== x.modeB ? `  mode ${x.modeA} → ${x.modeB}` : ''}`);
    for (const x of f.renamed) out(`  ${yellow('>')} ${x.from} → ${x.to}  ${formatBytes(x.size)}`);
  }
  if (a.stat) return;
  if (r.tensors.length) {
    out('tensors:');
    for (const t of r.tensors) renderTensors(t, a.tensors || a.stats);
  }
  for (const t of r.text) {
    if (t.format === 'json') {
      out(`${t.path} (JSON):`);
      for (const c of t.changes) out(`  ${c.type === 'added' ? green('+') : c.type === 'removed' ? red('-') : yellow('~')} ${c.path}: ${c.type === 'added' ? show(c.b) : c.type === 'removed' ? show(c.a) : `${show(c.a)} → ${show(c.b)}`}`);
    } else {
      for (const line of t.patch.trimEnd().split('\n').slice(1)) {
        out(line.startsWith('+') && !line.startsWith('+++') ? green(line) : line.startsWith('-') && !line.startsWith('---') ? red(line) : line.startsWith('@@') ? dim(line) : line);
      }
    }
  }
  if (r.curves.length) {
    out('curves:');
    for (const c of r.curves) {
      const s = (x: typeof c.a): string =>
        !x ? '(none)' : `final ${x.final ? `${num(x.final.value)} @${x.final.step}` : '-'}${x.best ? `, best ${num(x.best.value)} @${x.best.step}` : ''}`;
      out(`  ${c.metric}: ${s(c.a)} → ${s(c.b)}`);
    }
  }
}

export const diffCommand: CommandModule<object, Args> = {
  command: 'diff <a> [b] [paths..]',
  describe: 'Compare two versions (or a version and the workspace): metadata, params, metrics, files, tensors, text, curves',
  builder: (y) =>
    y
      .positional('a', { type: 'string', demandOption: true })
      .positional('b', { type: 'string', describe: "default: the workspace (also spelled 'workspace')" })
      .positional('paths', { type: 'string', array: true, default: [], describe: 'only these files, directories or globs' })
      .option('json', { type: 'boolean', default: false })
      .option('stat', { type: 'boolean', default: false, describe: 'file summary only (no tensor, text or curve sections)' })
      .option('tensors', { type: 'boolean', default: false, describe: 'list every changed tensor' })
      .option('stats', { type: 'boolean', default: false, describe: 'relative norm of each tensor change (reads the changed tensors)' })
      .example('$0 diff v001 v002', 'everything that changed from v001 to v002')
      .example('$0 diff v002', 'v002 against the workspace')
      .example('$0 diff v001 v002 model.safetensors --tensors --stats', 'per-tensor changes with norms')
      .example('$0 diff v001 v002 --json', 'the stable JSON shape (docs/diff.md)') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      const sides: Side[] = [];
      try {
        const sa = a.a === 'workspace' ? await workspaceSide(store) : await versionSide(store, a.a);
        sides.push(sa);
        const sb = a.b === undefined || a.b === 'workspace' ? await workspaceSide(store) : await versionSide(store, a.b);
        sides.push(sb);
        const r = await diffSides(store, sa, sb, { paths: a.paths, stats: a.stats, statOnly: a.stat });
        if (a.json) printJson(r);
        else render(r, a);
      } finally {
        for (const s of sides) await s.close();
      }
    });
  }),
};
