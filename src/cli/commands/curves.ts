import path from 'node:path';
import type { CommandModule } from 'yargs';
import { versionSide, workspaceSide, type Side } from '../../ops/diff/sides.js';
import { readCurves, summarizeCurves, type Curve } from '../../ops/diff/curves.js';
import { renderPng, renderSvg, terminalChart, type ChartSeries } from '../../web/charts.js';
import { atomicWriteFile } from '../../lib/fsutil.js';
import { MstoreError } from '../../lib/errors.js';
import { handler, out, printJson, useColor, warn, withStore } from '../ui/output.js';

interface Args {
  revs: string[];
  metric?: string;
  svg?: string;
  png?: string;
  json: boolean;
}

/** `workspace` names the uncommitted workspace, as in diff. */
export const WORKSPACE_REV = 'workspace';


export const curvesCommand: CommandModule<object, Args> = {
  command: 'curves <revs..>',
  describe: 'Learning curves of versions (evolution/, trainer_state.json), overlaid',
  builder: (y) =>
    y
      .positional('revs', { type: 'string', array: true, demandOption: true, describe: `versions to overlay ('${WORKSPACE_REV}': the uncommitted one)` })
      .option('metric', { type: 'string', requiresArg: true, describe: 'the curve to plot (default: loss, else the first metric all REVs have)' })
      .option('svg', { type: 'string', requiresArg: true, describe: 'write the chart to FILE as SVG' })
      .option('png', { type: 'string', requiresArg: true, describe: 'write the chart to FILE as PNG' })
      .conflicts('svg', 'png')
      .option('json', { type: 'boolean', default: false, describe: 'the curves and their summaries as JSON' })
      .example('$0 curves v003', 'the loss curve of v003 in the terminal')
      .example('$0 curves v001 v002 workspace --metric eval_loss', 'eval_loss of two versions and the workspace, overlaid')
      .example('$0 curves v001 v002 --svg loss.svg', 'the chart as an SVG file (--png loss.png for a PNG)')
      .example('$0 curves latest --json', 'every curve of latest with final and best values') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      const revs = [...new Set(a.revs.map(String))];
      const loaded: { rev: string; side: Side; curves: Curve[] }[] = [];
      try {
        for (const rev of revs) {
          const side = rev === WORKSPACE_REV ? await workspaceSide(store) : await versionSide(store, rev);
          loaded.push({ rev, side, curves: [] });
          const curves = await readCurves(side);
          if (!curves.length) {
            throw new MstoreError('EBADINPUT', `${rev === side.label ? rev : `${rev} (${side.label})`} has no learning curves (no step records in evolution/, evolution_snapshots/ or trainer_state.json; see docs/curves.md)`);
          }
          loaded[loaded.length - 1].curves = curves;
        }
      } finally {
        for (const l of loaded) await l.side.close();
      }

      const labels = uniqueLabels(loaded.map((l) => l.side.label));
      const all = [...new Set(loaded.flatMap((l) => l.curves.map((c) => c.metric)))].sort();
      let metric = a.metric;
      if (metric !== undefined && !all.includes(metric)) {
        throw new MstoreError('EBADINPUT', `no curve '${metric}' in ${revs.join(', ')}; available: ${all.join(', ')}`);
      }
      if (metric === undefined) {
        // loss when all have it, else the first metric all have, else loss, else the first REV's first
        const common = all.filter((m) => loaded.every((l) => l.curves.some((c) => c.metric === m)));
        metric = common.includes('loss') ? 'loss' : (common[0] ?? (all.includes('loss') ? 'loss' : loaded[0].curves[0].metric));
      }
      const chosen = metric;
      const series: ChartSeries[] = loaded.map((l, i) => ({ label: labels[i], points: l.curves.find((c) => c.metric === chosen)?.points ?? [] }));
      const missing = loaded.filter((_, i) => series[i].points.length === 0).map((l) => l.rev);
      const drawn = series.filter((s) => s.points.length > 0);

      const file = a.svg ?? a.png;
      if (file) {
        const title = `${chosen}: ${drawn.map((s) => s.label).join(' vs ')}`;
        const data = a.svg ? await renderSvg(drawn, { title, metric: chosen }) : await renderPng(drawn, { title, metric: chosen });
        await atomicWriteFile(path.resolve(file), data);
      }

      for (const rev of missing) warn(`${rev} has no curve '${chosen}'`);
      if (a.json) {
        // Without --metric: every curve; with it: that one.
        return printJson({
          metric: chosen,
          versions: loaded.map((l, i) => {
            const curves = a.metric === undefined ? l.curves : l.curves.filter((c) => c.metric === chosen);
            return { rev: l.rev, label: labels[i], commit: l.side.commit ?? null, curves, summaries: summarizeCurves(curves) };
          }),
        });
      }
      if (file) {
        out(`wrote ${file}: ${chosen} of ${drawn.map((s) => s.label).join(', ')}`);
        return;
      }
      const summaries = loaded.map((l) => summarizeCurves(l.curves.filter((c) => c.metric === chosen))[0]);
      const better = summaries.find((s) => s)?.better;
      out(`${chosen}${better ? ` (${better} is better)` : ''}`);
      const columns = process.stdout.isTTY ? process.stdout.columns || 80 : 80;
      out(terminalChart(drawn, { width: Math.max(20, Math.min(120, columns - 16)), height: 15, color: useColor() }));
      loaded.forEach((_, i) => {
        const s = summaries[i];
        if (!s?.final) return;
        const best = s.best ? `, best ${num(s.best.value)} at step ${num(s.best.step)}` : '';
        out(`${labels[i]}: final ${num(s.final.value)} at step ${num(s.final.step)}${best}, ${s.points} points`);
      });
    });
  }),
};

function num(v: number): string {
  return String(Number(v.toPrecision(6)));
}

/** The legend needs one label per line: a version named twice (v003 and latest) gets ` (2)`. */
function uniqueLabels(labels: string[]): string[] {
  const seen = new Map<string, number>();
  return labels.map((l) => {
    const n = (seen.get(l) ?? 0) + 1;
    seen.set(l, n);
    return n === 1 ? l : `${l} (${n})`;
  });
}
