/**
 * Learning curves ("evolution snapshots") a version or the workspace holds, read through a
 * diff `Side`. The layout (docs/curves.md):
 *
 * - `trainer_state.json` at the top level: Hugging Face's `{"log_history": [...]}`;
 * - any `*.json` under `evolution_snapshots/` (the old name) or `evolution/`, at any depth:
 *   one step record, an array of them, or an object with a `log_history` array;
 * - any `*.jsonl` there: one step record per line (blank lines skipped).
 *
 * A step record is an object with a numeric `step` (else `global_step`, else `epoch`) as x;
 * each of its other numeric fields is a point of the curve of that name. Files are read in
 * that order (trainer_state.json, evolution_snapshots/, evolution/, each by path), records in
 * file order; when a metric has two values at one step the last one read wins.
 */
import type { Side } from './sides.js';
import { MstoreError } from '../../lib/errors.js';

export interface CurvePoint {
  step: number;
  value: number;
}

export interface Curve {
  metric: string;
  /** Sorted by step, one point per step. */
  points: CurvePoint[];
}

export interface CurveSummary {
  metric: string;
  /** The point at the largest step. */
  final?: CurvePoint;
  /** The lowest (or highest) value, at its first step; undefined when `better` is. */
  best?: CurvePoint;
  better: 'lower' | 'higher' | undefined;
  points: number;
}

export interface CurveDiff {
  metric: string;
  a?: CurveSummary;
  b?: CurveSummary;
}

/** The keys that give a record's x, in order of preference; never curves themselves. */
export const STEP_KEYS = ['step', 'global_step', 'epoch'] as const;

/** Directories whose json/jsonl files hold step records; later ones win on duplicate steps. */
export const EVOLUTION_DIRS = ['evolution_snapshots/', 'evolution/'] as const;

/** The top-level Hugging Face trainer state (its `log_history`). */
export const TRAINER_STATE = 'trainer_state.json';

/** The files of a side that `readCurves` reads, in reading order. */
export function evolutionFiles(paths: Iterable<string>): string[] {
  const all = [...paths].sort(byCodeUnit);
  const out: string[] = [];
  if (all.includes(TRAINER_STATE)) out.push(TRAINER_STATE);
  for (const dir of EVOLUTION_DIRS) {
    for (const p of all) if (p.startsWith(dir) && /\.jsonl?$/i.test(p)) out.push(p);
  }
  return out;
}

/** Every curve a side holds, sorted by metric name; [] when it holds none. */
export async function readCurves(side: Side): Promise<Curve[]> {
  const paths = await side.paths();
  const byMetric = new Map<string, Map<number, number>>();
  const add = (rec: unknown): void => {
    if (!isObject(rec)) return;
    let x: number | undefined;
    for (const k of STEP_KEYS) {
      if (isNum(rec[k])) {
        x = rec[k] as number;
        break;
      }
    }
    if (x === undefined) return;
    for (const [k, v] of Object.entries(rec)) {
      if ((STEP_KEYS as readonly string[]).includes(k) || !isNum(v)) continue;
      let m = byMetric.get(k);
      if (!m) byMetric.set(k, (m = new Map()));
      m.delete(x); // re-insert: the last value read is the one kept
      m.set(x, v as number);
    }
  };
  for (const file of evolutionFiles(paths)) {
    const text = (await side.readAll(file)).toString('utf8');
    const where = `${side.label}:${file}`;
    if (/\.jsonl$/i.test(file)) {
      const lines = text.split('\n');
      for (let i = 0; i < lines.length; i++) {
        if (!lines[i].trim()) continue;
        add(parseJson(lines[i], `${where}:${i + 1}`));
      }
      continue;
    }
    const doc = parseJson(text, where);
    const records = Array.isArray(doc) ? doc : isObject(doc) && Array.isArray(doc.log_history) ? doc.log_history : [doc];
    for (const r of records) add(r);
  }
  return [...byMetric.entries()]
    .map(([metric, m]) => ({
      metric,
      points: [...m.entries()].map(([step, value]) => ({ step, value })).sort((p, q) => p.step - q.step),
    }))
    .sort((a, b) => byCodeUnit(a.metric, b.metric));
}

const LOWER = new Set(['loss', 'perplexity', 'ppl', 'error', 'err', 'wer', 'cer', 'mse', 'mae', 'rmse']);
const HIGHER = new Set(['accuracy', 'acc', 'f1', 'bleu', 'exact_match', 'em', 'auc', 'precision', 'recall', 'reward']);

/**
 * Whether lower or higher values of a metric are better, from its name: the name is split
 * into words (at `_ - / . :` spaces and lowerCamel humps) and each word looked up. Lower:
 * loss, perplexity/ppl, error/err, wer, cer, mse, mae, rmse. Higher: accuracy/acc, f1, bleu,
 * rouge* (rouge1, rougeL, ...), exact_match/em, auc, precision, recall, reward. A name with
 * words of both kinds, or of neither, is undefined.
 */
export function metricDirection(name: string): 'lower' | 'higher' | undefined {
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
  const joined = words.join('_');
  let lower = false;
  let higher = /(^|_)exact_match(_|$)/.test(joined);
  for (const w of words) {
    if (LOWER.has(w)) lower = true;
    if (HIGHER.has(w) || w.startsWith('rouge')) higher = true;
  }
  if (lower === higher) return undefined;
  return lower ? 'lower' : 'higher';
}

/** Final point, best point (by the metric's direction) and point count of each curve. */
export function summarizeCurves(curves: Curve[]): CurveSummary[] {
  return curves.map((c) => {
    const better = metricDirection(c.metric);
    let best: CurvePoint | undefined;
    if (better) {
      for (const p of c.points) {
        if (!best || (better === 'lower' ? p.value < best.value : p.value > best.value)) best = p;
      }
    }
    const final = c.points.length ? c.points[c.points.length - 1] : undefined;
    const s: CurveSummary = { metric: c.metric, better, points: c.points.length };
    if (final) s.final = { ...final };
    if (best) s.best = { ...best };
    return s;
  });
}

/** Every metric of either side, sorted by name, with A's and B's summaries where present. */
export function diffCurves(a: Curve[], b: Curve[]): CurveDiff[] {
  const sa = new Map(summarizeCurves(a).map((s) => [s.metric, s]));
  const sb = new Map(summarizeCurves(b).map((s) => [s.metric, s]));
  const metrics = [...new Set([...sa.keys(), ...sb.keys()])].sort(byCodeUnit);
  return metrics.map((metric) => {
    const d: CurveDiff = { metric };
    const x = sa.get(metric);
    const y = sb.get(metric);
    if (x) d.a = x;
    if (y) d.b = y;
    return d;
  });
}

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNum(v: unknown): boolean {
  return typeof v === 'number' && Number.isFinite(v);
}

/**
 * JSON.parse, also accepting the bare NaN / Infinity / -Infinity that Python's json module
 * writes by default (trainer_state.json often has `"grad_norm": NaN`): they read as null, so
 * that point is skipped.
 */
function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    if (/NaN|Infinity/.test(text)) {
      const fixed = text.replace(/"(?:[^"\\]|\\.)*"|-?\b(?:NaN|Infinity)\b/g, (m) => (m.startsWith('"') ? m : 'null'));
      try {
        return JSON.parse(fixed);
      } catch {
        // report the original error
      }
    }
    const msg = (e as Error).message.split('\n')[0];
    throw new MstoreError('EBADINPUT', `${where}: bad JSON (${msg})`);
  }
}
