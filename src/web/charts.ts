/**
 * Learning-curve charts: a terminal chart (asciichart), an SVG (a vega-lite line chart rendered
 * by vega's SVG string renderer, no canvas needed) and a PNG of that SVG (resvg). vega,
 * vega-lite and resvg are loaded on first use: other commands never pay for them.
 */
import { existsSync } from 'node:fs';
import asciichart from 'asciichart';
import type { CurvePoint } from '../ops/diff/curves.js';

export interface ChartSeries {
  /** Shown in the legend: a version name, or `workspace`. */
  label: string;
  points: CurvePoint[];
}

export interface TerminalChartOptions {
  /** Plot columns (the common step grid); default 60. */
  width?: number;
  /** Plot rows; default 15. */
  height?: number;
  /** ANSI colours for the lines and the legend; false gives plain text. */
  color: boolean;
}

export interface SvgChartOptions {
  title: string;
  /** The y axis title. */
  metric: string;
  /** Plot area size in pixels (axes, title and legend come on top); default 640 x 320. */
  width?: number;
  height?: number;
}

export interface PngChartOptions extends SvgChartOptions {
  /** Pixel density: 2 renders the SVG at twice its size; default 2. */
  scale?: number;
}

const TERM_COLORS = [asciichart.blue, asciichart.yellow, asciichart.red, asciichart.cyan, asciichart.green, asciichart.magenta, asciichart.lightblue, asciichart.lightred];
const LINE = '─';

/**
 * The series overlaid in one terminal chart. asciichart plots y over equally spaced x, so each
 * series is resampled (linear interpolation) onto a grid of `width` steps from the smallest to
 * the largest step of all series; a series is drawn only over its own step range. Below the
 * plot: the first and last step, then a legend line with each series' label and colour.
 */
export function terminalChart(series: ChartSeries[], opts: TerminalChartOptions): string {
  const drawn = series.filter((s) => s.points.length > 0);
  if (!drawn.length) return '(no points)';
  const width = Math.max(2, Math.floor(opts.width ?? 60));
  const height = Math.max(1, Math.floor(opts.height ?? 15));
  const paint = (s: string, i: number): string => (opts.color ? asciichart.colored(s, TERM_COLORS[i % TERM_COLORS.length]) : s);

  let x0 = Infinity;
  let x1 = -Infinity;
  for (const s of drawn) {
    x0 = Math.min(x0, s.points[0].step);
    x1 = Math.max(x1, s.points[s.points.length - 1].step);
  }
  const col = (step: number): number => (x1 === x0 ? 0 : ((step - x0) / (x1 - x0)) * (width - 1));
  const gridStep = (c: number): number => (x1 === x0 ? x0 : x0 + ((x1 - x0) * c) / (width - 1));

  // Resample: NaN outside a series' own range.
  const sampled = drawn.map((s) => {
    const pts = s.points;
    const first = Math.round(col(pts[0].step));
    const last = Math.round(col(pts[pts.length - 1].step));
    const ys = new Array<number>(width).fill(NaN);
    let j = 0;
    for (let c = first; c <= last; c++) {
      const x = Math.min(Math.max(gridStep(c), pts[0].step), pts[pts.length - 1].step);
      while (j < pts.length - 1 && pts[j + 1].step <= x) j++;
      const p = pts[j];
      const q = pts[j + 1];
      ys[c] = !q || p.step === x ? p.value : p.value + ((q.value - p.value) * (x - p.step)) / (q.step - p.step);
    }
    return { ys, first, last };
  });
  let min = Infinity;
  let max = -Infinity;
  for (const { ys } of sampled) {
    for (const y of ys) {
      if (Number.isNaN(y)) continue;
      min = Math.min(min, y);
      max = Math.max(max, y);
    }
  }

  // Axis labels: one number of decimals for all, enough to tell adjacent rows apart.
  const range = max - min;
  const decimals = range > 0 ? Math.min(10, Math.max(0, Math.ceil(-Math.log10(range / height)) + 1)) : Math.min(10, Math.max(2, Math.ceil(-Math.log10(Math.abs(max) || 1)) + 3));
  const fixed = (v: number): string => {
    const t = v.toFixed(decimals);
    return /^-0\.?0*$/.test(t) ? t.slice(1) : t; // no "-0.00"
  };
  // The labels asciichart will ask for (its arithmetic), so that all have one width.
  const ratio = range !== 0 ? height / range : 1;
  const rowCount = Math.abs(Math.round(max * ratio) - Math.round(min * ratio));
  let labelWidth = 4;
  for (let k = 0; k <= rowCount; k++) labelWidth = Math.max(labelWidth, fixed(rowCount > 0 ? max - (k * range) / rowCount : max).length);
  const format = (v: number): string => fixed(v).padStart(labelWidth);
  const cfg = { min, max, height, offset: 3, format };
  // asciichart rows: `label`, one space, the axis column, then one cell per step of the grid.
  const prefix = labelWidth + 2;
  const toRows = (text: string): string[][] => text.split('\n').map((l) => Array.from(l));

  // The labels and a bare axis. (asciichart marks each series' first value on the axis, and
  // its zero-line mark lands on the mirrored row when min < 0: neither is kept.)
  const grid = toRows(asciichart.plot([max, max], cfg)).map((row) => {
    const line = new Array<string>(prefix + width).fill(' ');
    for (let i = 0; i < prefix - 1; i++) line[i] = row[i] ?? ' ';
    line[prefix - 1] = '┤';
    return line;
  });
  // asciichart's row of a value (its own arithmetic).
  const rowOf = (y: number): number => grid.length - 1 - (Math.round(y * ratio) - Math.round(min * ratio));

  sampled.forEach(({ ys, first, last }, i) => {
    // asciichart cannot plot gaps (NaN): plot the series with its ends held, keep only its range.
    const filled = ys.map((y, c) => (Number.isNaN(y) ? ys[c < first ? first : last] : y));
    const rows = toRows(asciichart.plot(filled, cfg));
    rows.forEach((row, r) => {
      if (!grid[r]) return;
      // Cell c is the stretch from grid column c to c + 1.
      for (let c = first; c < last; c++) {
        const ch = row[prefix + c];
        if (ch && ch !== ' ') grid[r][prefix + c] = paint(ch, i);
      }
    });
    if (first === 0) {
      const r = rowOf(filled[0]);
      if (grid[r]) grid[r][prefix - 1] = paint(rows[r]?.[prefix - 1] ?? '┼', i);
    } else if (first === last) {
      // A single point away from the axis: nothing lies between two columns, so mark it.
      const r = rowOf(filled[first]);
      if (grid[r]) grid[r][prefix + Math.min(first, width - 1)] = paint('●', i);
    }
  });

  const lines = grid.map((l) => l.join('').replace(/\s+$/, ''));
  const left = fmtStep(x0);
  const right = fmtStep(x1);
  // Grid column c is at character prefix - 1 + c (column 0 on the axis).
  const axis = ' '.repeat(prefix - 1) + left;
  const room = width - left.length - right.length;
  if (x1 !== x0 && room >= 1) {
    const mid = room >= 8 ? 'step' : '';
    const pad = room - mid.length;
    lines.push(axis + ' '.repeat(Math.floor(pad / 2)) + mid + ' '.repeat(Math.ceil(pad / 2)) + right);
  } else lines.push(`${axis}  (step)`);
  lines.push(' '.repeat(prefix - 1) + drawn.map((s, i) => `${paint(LINE + LINE, i)} ${s.label}`).join('   '));
  return lines.join('\n');
}

function fmtStep(x: number): string {
  return Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(6)));
}

/**
 * A vega-lite line chart of the series as an SVG document: x = step, y = value, one colour per
 * series (in the given order). The same input gives the same bytes: no ids, no timestamps.
 */
export async function renderSvg(series: ChartSeries[], opts: SvgChartOptions): Promise<string> {
  const [vega, vl] = await Promise.all([import('vega'), import('vega-lite')]);
  // vega's and vega-lite's default loggers write to the console; the library never prints.
  const quiet = vega.logger(vega.None);
  const values = series.flatMap((s) => s.points.map((p) => ({ series: s.label, step: p.step, value: p.value })));
  const spec = vl.compile({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: opts.title,
    width: opts.width ?? 640,
    height: opts.height ?? 320,
    background: 'white',
    data: { values },
    mark: { type: 'line', strokeWidth: 2 },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step', scale: { zero: false } },
      y: { field: 'value', type: 'quantitative', title: opts.metric, scale: { zero: false } },
      color: { field: 'series', type: 'nominal', title: 'version', scale: { domain: series.map((s) => s.label) } },
      order: { field: 'step', type: 'quantitative' },
    },
  }, { logger: quiet }).spec;
  const view = new vega.View(vega.parse(spec), { renderer: 'none', logger: quiet });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * The SVG chart as a PNG. Text needs a font: a common sans-serif font file is loaded when one
 * is found (fast, and the same glyphs on every machine that has it), else resvg loads the
 * system fonts; with no font at all the PNG is still valid, only without text.
 */
export async function renderPng(series: ChartSeries[], opts: PngChartOptions): Promise<Buffer> {
  const svg = await renderSvg(series, opts);
  const { Resvg } = await import('@resvg/resvg-js');
  const font = pngFont();
  const resvg = new Resvg(svg, {
    font: font
      ? { loadSystemFonts: false, fontFiles: [font.file], defaultFontFamily: font.family, sansSerifFamily: font.family }
      : { loadSystemFonts: true },
    fitTo: { mode: 'zoom', value: opts.scale ?? 2 },
    background: 'white',
    logLevel: 'off',
  });
  return resvg.render().asPng();
}

const FONT_CANDIDATES: { file: string; family: string }[] = [
  { file: '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', family: 'DejaVu Sans' },
  { file: '/usr/share/fonts/dejavu/DejaVuSans.ttf', family: 'DejaVu Sans' },
  { file: '/usr/share/fonts/TTF/DejaVuSans.ttf', family: 'DejaVu Sans' },
  { file: '/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf', family: 'DejaVu Sans' },
  { file: '/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf', family: 'Liberation Sans' },
  { file: '/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf', family: 'Liberation Sans' },
  { file: '/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf', family: 'Noto Sans' },
  { file: '/usr/share/fonts/noto/NotoSans-Regular.ttf', family: 'Noto Sans' },
  { file: '/System/Library/Fonts/Supplemental/Arial.ttf', family: 'Arial' },
  { file: '/Library/Fonts/Arial.ttf', family: 'Arial' },
  { file: 'C:\\Windows\\Fonts\\arial.ttf', family: 'Arial' },
];

/** The font file renderPng uses, or undefined when it falls back to the system fonts. */
export function pngFont(): { file: string; family: string } | undefined {
  return FONT_CANDIDATES.find((f) => existsSync(f.file));
}
