/**
 * Learning curves: one or several versions overlaid, the metric chosen on the page, drawn as
 * an inline SVG by the same vega-lite chart as `mstore curves --svg` (one line, one path, per
 * version), from `readCurves`, the function behind `mstore curves --json`.
 */
import type { Store } from '../../repo/store.js';
import { log } from '../../ops/inspect.js';
import { versionSide } from '../../ops/diff/sides.js';
import { readCurves, type Curve } from '../../ops/diff/curves.js';
import { renderSvg } from '../charts.js';
import { html, trusted, type Html } from '../html.js';

/** Versions offered as checkboxes: the newest of the default line. */
const OFFERED = 30;

export async function curvesPage(store: Store, revs: string[], metricWanted: string | undefined): Promise<{ title: string; body: Html }> {
  const recent = (await log(store, { limit: OFFERED })).entries.map((e) => e.version ?? e.commit.slice(0, 12));
  const chosen = revs.length ? [...new Set(revs)] : recent.slice(0, 1);
  const loaded: { rev: string; curves: Curve[] }[] = [];
  for (const rev of chosen) {
    const side = await versionSide(store, rev);
    try {
      loaded.push({ rev, curves: await readCurves(side) });
    } finally {
      await side.close();
    }
  }
  const metrics = [...new Set(loaded.flatMap((l) => l.curves.map((c) => c.metric)))].sort();
  const metric = metricWanted && metrics.includes(metricWanted) ? metricWanted : metrics.includes('loss') ? 'loss' : metrics[0];
  const offered = [...new Set([...chosen, ...recent])];
  const form = html`<form class="filters" method="get" action="/ui/curves">
<fieldset><legend>Versions</legend>
${offered.map((v) => html`<label class="check"><input type="checkbox" name="v" value="${v}"${chosen.includes(v) ? html` checked` : ''}> ${v}</label>`)}
</fieldset>
<label>Metric<select name="metric">${metrics.map((m) => html`<option value="${m}"${m === metric ? html` selected` : ''}>${m}</option>`)}</select></label>
<button type="submit">Show</button>
</form>`;
  const series = loaded
    .map((l) => ({ label: l.rev, points: l.curves.find((c) => c.metric === metric)?.points ?? [] }))
    .filter((s) => s.points.length);
  const without = loaded.filter((l) => !l.curves.some((c) => c.metric === metric)).map((l) => l.rev);
  const chart = metric && series.length
    ? html`<figure class="chart" aria-label="${metric} by step for ${series.map((s) => s.label).join(', ')}">${trusted(await renderSvg(series, { title: metric, metric }))}</figure>`
    : html`<p>${chosen.length ? 'No learning curves in the chosen versions (step records in evolution/, evolution_snapshots/ or trainer_state.json).' : 'This store has no versions yet.'}</p>`;
  const body = html`${form}${chart}${without.length && metric ? html`<p class="muted">No ${metric} curve in: ${without.join(', ')}.</p>` : ''}`;
  return { title: 'Learning curves', body };
}
