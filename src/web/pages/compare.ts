/**
 * Compare two versions: everything `mstore diff --tensors` shows (metadata, params, metrics,
 * files, changed tensors, text, curve summaries), from `diffSides`, the function behind
 * `mstore diff --json`. Metric deltas say better or worse by the metric's direction, in colour
 * and in words.
 */
import type { Store } from '../../repo/store.js';
import { diffSides, type DiffResult } from '../../ops/diff/diff.js';
import { versionSide, type Side } from '../../ops/diff/sides.js';
import { html, type Html } from '../html.js';
import { formatBytes, formatValue, table, versionLink } from '../layout.js';

const num = (v: number | null | undefined): string => (v === null || v === undefined ? '-' : formatValue(v));

function verdictCell(c: DiffResult['metrics'][number]): Html {
  if (c.verdict === 'improved') return html`<span class="better">better${c.better ? ` (${c.better} is better)` : ''}</span>`;
  if (c.verdict === 'worse') return html`<span class="worse">worse${c.better ? ` (${c.better} is better)` : ''}</span>`;
  if (c.verdict === 'same') return html`same`;
  return html`<span class="muted">direction unknown</span>`;
}

function render(r: DiffResult): Html {
  const sections: Html[] = [];
  if (r.identical) sections.push(html`<p class="notice">The two versions are identical.</p>`);
  if (r.metadata.length) sections.push(html`<h2>Metadata</h2>${table('Changed fields', ['Field', r.a.label, r.b.label], r.metadata.map((f) => [f.field, formatValue(f.a), formatValue(f.b)]))}`);
  const p = r.params;
  if (p.changed.length + p.added.length + p.removed.length) {
    sections.push(html`<h2>Params</h2>${table('Changed params', ['Param', r.a.label, r.b.label], [
      ...p.changed.map((c) => [html`<span class="mono">${c.key}</span>`, formatValue(c.a), formatValue(c.b)]),
      ...p.added.map((c) => [html`<span class="mono">${c.key}</span>`, html`<span class="muted">absent</span>`, formatValue(c.b)]),
      ...p.removed.map((c) => [html`<span class="mono">${c.key}</span>`, formatValue(c.a), html`<span class="muted">absent</span>`]),
    ])}`);
  }
  if (r.metrics.length) {
    sections.push(html`<h2>Metrics</h2>${table('Metric changes', ['Metric', r.a.label, r.b.label, 'Δ', 'Δ %', 'Verdict'], r.metrics.map((c) => [
      html`<span class="mono">${c.name}</span>`,
      formatValue(c.a),
      formatValue(c.b),
      num(c.delta),
      c.relative === null ? '-' : `${(c.relative * 100).toFixed(2)} %`,
      verdictCell(c),
    ]), 'metrics')}`);
  }
  const f = r.files;
  const fileRows = [
    ...f.added.map((x) => ['added', html`<span class="mono">${x.path}</span>`, '-', formatBytes(x.size)]),
    ...f.removed.map((x) => ['removed', html`<span class="mono">${x.path}</span>`, formatBytes(x.size), '-']),
    ...f.modified.map((x) => ['modified', html`<span class="mono">${x.path}</span>`, formatBytes(x.sizeA), formatBytes(x.sizeB)]),
    ...f.renamed.map((x) => ['renamed', html`<span class="mono">${x.from}</span> → <span class="mono">${x.to}</span>`, formatBytes(x.size), formatBytes(x.size)]),
  ];
  sections.push(html`<h2>Files</h2>${fileRows.length ? table(`${fileRows.length} changed, ${f.unchanged} unchanged`, ['Change', 'Path', r.a.label, r.b.label], fileRows, 'files') : html`<p>No file changed (${f.unchanged} unchanged).</p>`}`);
  for (const t of r.tensors) {
    const changed = t.tensors.filter((x) => x.status !== 'unchanged');
    sections.push(html`<h2>Tensors of <span class="mono">${t.path}</span></h2>
<p>${t.counts.changed} changed, ${t.counts.added} added, ${t.counts.removed} removed, ${t.counts.unchanged} unchanged; ${formatBytes(t.bytesChanged)} of ${formatBytes(t.bytesTotalB)} changed.</p>
${table('Changed tensors', ['Tensor', 'Change', 'dtype / shape', 'Changed bytes'], changed.map((x) => [
      html`<span class="mono">${x.name}</span>`,
      x.status,
      `${x.dtypeA ?? '-'} [${(x.shapeA ?? []).join(', ')}] → ${x.dtypeB ?? '-'} [${(x.shapeB ?? []).join(', ')}]`,
      formatBytes(x.changedBytes),
    ]), 'tensors')}`);
  }
  for (const t of r.text) {
    sections.push(html`<h2>Text of <span class="mono">${t.path}</span></h2>${t.format === 'json'
      ? table('JSON changes', ['Key', 'Change', r.a.label, r.b.label], t.changes.map((c) => [html`<span class="mono">${c.path}</span>`, c.type, formatValue(c.a), formatValue(c.b)]))
      : html`<pre class="mono scroll">${t.patch}</pre>`}`);
  }
  if (r.curves.length) {
    const s = (x: DiffResult['curves'][number]['a']): string => (!x ? '(none)' : `final ${x.final ? `${num(x.final.value)} @${x.final.step}` : '-'}${x.best ? `, best ${num(x.best.value)} @${x.best.step}` : ''}`);
    sections.push(html`<h2>Curves</h2>${table('Learning-curve summaries', ['Metric', r.a.label, r.b.label], r.curves.map((c) => [html`<span class="mono">${c.metric}</span>`, s(c.a), s(c.b)]))}`);
  }
  return html`${sections}`;
}

export async function comparePage(store: Store, a: string | undefined, b: string | undefined): Promise<{ title: string; body: Html }> {
  const form = html`<form class="filters" method="get" action="/ui/compare">
<label>From<input name="a" value="${a ?? ''}" required placeholder="v001" autocomplete="off"></label>
<label>To<input name="b" value="${b ?? ''}" required placeholder="v002" autocomplete="off"></label>
<button type="submit">Compare</button>
</form>`;
  if (!a || !b) return { title: 'Compare versions', body: html`${form}<p>Name two versions (a version, tag, line/vNNN or commit id).</p>` };
  const sides: Side[] = [];
  try {
    sides.push(await versionSide(store, a));
    sides.push(await versionSide(store, b));
    const r = await diffSides(store, sides[0], sides[1], {});
    return { title: `Compare ${a} → ${b}`, body: html`${form}<p>${versionLink(a)} → ${versionLink(b)}</p>${render(r)}` };
  } finally {
    for (const s of sides) await s.close();
  }
}
