/**
 * `diff A B`: what changed between two versions, or a version and the workspace, in every
 * dimension a fine-tuning run has: metadata, params, metrics (with direction), files
 * (renames by content), tensors (from headers and chunk lists), text files (JSON
 * structurally, others as unified diffs) and learning curves. The JSON shape is stable and
 * specified in docs/diff.md.
 */
import path from 'node:path';
import picomatch from 'picomatch';
import microdiff from 'microdiff';
import { createTwoFilesPatch } from 'diff';
import type { Store } from '../../repo/store.js';
import type { Side, SideFile } from './sides.js';
import type { VersionMeta } from '../../repo/versions.js';
import { readLabels } from '../labels.js';
import { diffTensors, type TensorDiff } from './tensors.js';
import { readCurves, diffCurves, metricDirection, type CurveDiff } from './curves.js';
import { TEXT_EXTENSIONS } from '../../repo/workspace.js';

export interface FieldChange {
  field: string;
  a: unknown;
  b: unknown;
}

export interface KeyChanges {
  changed: { key: string; a: unknown; b: unknown }[];
  added: { key: string; b: unknown }[];
  removed: { key: string; a: unknown }[];
}

export interface MetricChange {
  name: string;
  a: unknown;
  b: unknown;
  /** b - a, when both are numbers. */
  delta: number | null;
  /** (b - a) / |a|, when both are numbers and a is not 0. */
  relative: number | null;
  /** Which way is better for this metric: from its name, or the store config's `metricDirections`. */
  better: 'lower' | 'higher' | null;
  verdict: 'improved' | 'worse' | 'same' | null;
}

export interface FileEntry {
  path: string;
  size: number;
  oid: string;
  mode: string;
}

export interface FileChanges {
  added: FileEntry[];
  removed: FileEntry[];
  modified: { path: string; sizeA: number; sizeB: number; oidA: string; oidB: string; modeA: string; modeB: string }[];
  renamed: { from: string; to: string; size: number; oid: string }[];
  unchanged: number;
}

export type TextChange =
  | { path: string; format: 'json'; changes: { path: string; type: 'changed' | 'added' | 'removed'; a?: unknown; b?: unknown }[] }
  | { path: string; format: 'unified'; patch: string };

export interface DiffResult {
  a: { label: string; commit: string | null };
  b: { label: string; commit: string | null };
  identical: boolean;
  metadata: FieldChange[];
  params: KeyChanges;
  metrics: MetricChange[];
  files: FileChanges;
  tensors: TensorDiff[];
  text: TextChange[];
  curves: CurveDiff[];
}

export interface DiffOptions {
  /** Restrict to these paths: exact files, directory prefixes or globs. */
  paths?: string[];
  /** Per-tensor norms (reads the changed tensors' data). */
  stats?: boolean;
  /** Skip the text and tensor sections (`--stat`). */
  statOnly?: boolean;
  /** Text files larger than this get no unified diff (default 1 MiB). */
  textMaxBytes?: number;
}

/** Flattens nested objects to dotted keys (`lora.r`), arrays and scalars kept as values. */
function flatten(o: Record<string, unknown> | undefined, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  for (const [k, v] of Object.entries(o ?? {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length) flatten(v as Record<string, unknown>, key, out);
    else out[key] = v;
  }
  return out;
}

const same = (x: unknown, y: unknown): boolean => JSON.stringify(x) === JSON.stringify(y);

function keyChanges(a: Record<string, unknown> | undefined, b: Record<string, unknown> | undefined): KeyChanges {
  const fa = flatten(a);
  const fb = flatten(b);
  const out: KeyChanges = { changed: [], added: [], removed: [] };
  for (const k of Object.keys(fa).sort()) {
    if (!(k in fb)) out.removed.push({ key: k, a: fa[k] });
    else if (!same(fa[k], fb[k])) out.changed.push({ key: k, a: fa[k], b: fb[k] });
  }
  for (const k of Object.keys(fb).sort()) if (!(k in fa)) out.added.push({ key: k, b: fb[k] });
  return out;
}

/** Version-level fields worth showing when they differ (the identity fields always differ). */
function metadataChanges(a: VersionMeta | undefined, b: VersionMeta | undefined, la: Record<string, string>, lb: Record<string, string>): FieldChange[] {
  if (!a || !b) return [];
  const out: FieldChange[] = [];
  const fields: [string, unknown, unknown][] = [
    ['description', a.description, b.description],
    ['line', a.line, b.line],
    ['created', a.created, b.created],
    ['author', `${a.author.name} <${a.author.email}>`, `${b.author.name} <${b.author.email}>`],
    ['host', a.host, b.host],
    ['status', la.status ?? a.status, lb.status ?? b.status],
    ['training_data', a.training_data, b.training_data],
    ['files.count', a.files.count, b.files.count],
    ['files.bytes', a.files.bytes, b.files.bytes],
  ];
  for (const [field, x, y] of fields) if (!same(x, y)) out.push({ field, a: x, b: y });
  for (const c of keyChanges(a.meta, b.meta).changed) out.push({ field: `meta.${c.key}`, a: c.a, b: c.b });
  for (const c of keyChanges(a.meta, b.meta).added) out.push({ field: `meta.${c.key}`, a: undefined, b: c.b });
  for (const c of keyChanges(a.meta, b.meta).removed) out.push({ field: `meta.${c.key}`, a: c.a, b: undefined });
  const labels = keyChanges(la, lb);
  for (const c of labels.changed) if (c.key !== 'status') out.push({ field: `label.${c.key}`, a: c.a, b: c.b });
  for (const c of labels.added) if (c.key !== 'status') out.push({ field: `label.${c.key}`, a: undefined, b: c.b });
  for (const c of labels.removed) if (c.key !== 'status') out.push({ field: `label.${c.key}`, a: c.a, b: undefined });
  return out;
}

function metricChanges(a: Record<string, unknown>, b: Record<string, unknown>, directions: Record<string, string>): MetricChange[] {
  const fa = flatten(a);
  const fb = flatten(b);
  const names = [...new Set([...Object.keys(fa), ...Object.keys(fb)])].sort();
  const out: MetricChange[] = [];
  for (const name of names) {
    const x = fa[name];
    const y = fb[name];
    if (same(x, y)) continue;
    const configured = directions[name];
    const better = configured === 'lower' || configured === 'higher' ? configured : (metricDirection(name) ?? null);
    const numeric = typeof x === 'number' && typeof y === 'number';
    const delta = numeric ? y - x : null;
    const relative = numeric && x !== 0 ? (y - x) / Math.abs(x) : null;
    let verdict: MetricChange['verdict'] = null;
    if (numeric && better) verdict = delta === 0 ? 'same' : (delta! < 0) === (better === 'lower') ? 'improved' : 'worse';
    out.push({ name, a: x, b: y, delta, relative, better, verdict });
  }
  return out;
}

function fileChanges(fa: Map<string, SideFile>, fb: Map<string, SideFile>): FileChanges {
  const entry = (f: SideFile): FileEntry => ({ path: f.path, size: f.size, oid: f.oid, mode: f.mode });
  const out: FileChanges = { added: [], removed: [], modified: [], renamed: [], unchanged: 0 };
  for (const [p, x] of fa) {
    const y = fb.get(p);
    if (!y) out.removed.push(entry(x));
    else if (x.oid !== y.oid || x.mode !== y.mode || x.kind !== y.kind) {
      out.modified.push({ path: p, sizeA: x.size, sizeB: y.size, oidA: x.oid, oidB: y.oid, modeA: x.mode, modeB: y.mode });
    } else out.unchanged++;
  }
  for (const [p, y] of fb) if (!fa.has(p)) out.added.push(entry(y));
  // A rename: content that left one path and appeared at another (git's exact-rename rule).
  const removedByOid = new Map<string, FileEntry[]>();
  for (const r of out.removed) removedByOid.set(r.oid, [...(removedByOid.get(r.oid) ?? []), r]);
  const stillAdded: FileEntry[] = [];
  for (const a of out.added) {
    const from = removedByOid.get(a.oid)?.shift();
    if (from) out.renamed.push({ from: from.path, to: a.path, size: a.size, oid: a.oid });
    else stillAdded.push(a);
  }
  const renamedFrom = new Set(out.renamed.map((r) => r.from));
  out.added = stillAdded;
  out.removed = out.removed.filter((r) => !renamedFrom.has(r.path));
  return out;
}

function isTextPath(p: string): boolean {
  return TEXT_EXTENSIONS.has(path.extname(p).toLowerCase());
}

async function textChange(a: Side, b: Side, p: string, maxBytes: number): Promise<TextChange | undefined> {
  const [fa, fb] = [(await a.files()).get(p)!, (await b.files()).get(p)!];
  if (fa.size > maxBytes || fb.size > maxBytes) return undefined;
  const [ta, tb] = [(await a.readAll(p)).toString('utf8'), (await b.readAll(p)).toString('utf8')];
  if (p.toLowerCase().endsWith('.json')) {
    try {
      const ja = JSON.parse(ta) as unknown;
      const jb = JSON.parse(tb) as unknown;
      if (ja && jb && typeof ja === 'object' && typeof jb === 'object') {
        const changes = microdiff(ja as Record<string, unknown>, jb as Record<string, unknown>).map((d) => {
          const at = d.path.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('') || '.';
          if (d.type === 'CHANGE') return { path: at, type: 'changed' as const, a: d.oldValue, b: d.value };
          if (d.type === 'CREATE') return { path: at, type: 'added' as const, b: d.value };
          return { path: at, type: 'removed' as const, a: d.oldValue };
        });
        return { path: p, format: 'json', changes };
      }
    } catch {
      // not JSON after all: a unified diff below
    }
  }
  const patch = createTwoFilesPatch(`a/${p}`, `b/${p}`, ta, tb, a.label, b.label, { context: 3 });
  return { path: p, format: 'unified', patch };
}

/** Compares two sides. Both are owned by the caller (close them). */
export async function diffSides(store: Store, a: Side, b: Side, opts: DiffOptions = {}): Promise<DiffResult> {
  const match = opts.paths?.length ? pathMatcher(opts.paths) : undefined;
  const filter = (m: Map<string, SideFile>): Map<string, SideFile> => (match ? new Map([...m].filter(([p]) => match(p))) : m);
  const fa = filter(await a.files());
  const fb = filter(await b.files());
  const la = a.commit ? await readLabels(store, a.commit) : {};
  const lb = b.commit ? await readLabels(store, b.commit) : {};
  const files = fileChanges(fa, fb);
  const directions = (store.config as { metricDirections?: Record<string, string> }).metricDirections ?? {};
  const result: DiffResult = {
    a: { label: a.label, commit: a.commit ?? null },
    b: { label: b.label, commit: b.commit ?? null },
    identical: false,
    metadata: match ? [] : metadataChanges(a.meta, b.meta, la, lb),
    params: match || !a.meta || !b.meta ? { changed: [], added: [], removed: [] } : keyChanges(a.meta.params, b.meta.params),
    metrics: match || !a.meta || !b.meta ? [] : metricChanges(a.meta.metrics, b.meta.metrics, directions),
    files,
    tensors: [],
    text: [],
    curves: [],
  };
  if (!opts.statOnly) {
    const changedPaths = [...files.modified.map((m) => m.path), ...files.added.map((f) => f.path), ...files.removed.map((f) => f.path)];
    if (changedPaths.some((p) => p.endsWith('.safetensors') || p.endsWith('.safetensors.index.json'))) {
      result.tensors = (await diffTensors(a, b, { paths: changedPaths, stats: opts.stats })).filter(
        (t) => t.counts.added + t.counts.removed + t.counts.changed > 0,
      );
    }
    for (const m of files.modified) {
      const x = fa.get(m.path)!;
      const y = fb.get(m.path)!;
      if (x.kind === 'link' || y.kind === 'link' || !(isTextPath(m.path) || (x.kind === 'git' && y.kind === 'git'))) continue;
      const t = await textChange(a, b, m.path, opts.textMaxBytes ?? 1024 * 1024);
      if (t) result.text.push(t);
    }
    result.curves = diffCurves(await readCurves(a), await readCurves(b)).filter((c) => !same(c.a, c.b));
  }
  result.identical =
    !result.metadata.length &&
    !result.params.changed.length && !result.params.added.length && !result.params.removed.length &&
    !result.metrics.length &&
    !files.added.length && !files.removed.length && !files.modified.length && !files.renamed.length;
  return result;
}

function pathMatcher(specs: string[]): (p: string) => boolean {
  const globs = specs.filter((s) => /[*?[\]{}]/.test(s)).map((g) => picomatch(g.replace(/^\.\//, ''), { dot: true }));
  const plain = specs.filter((s) => !/[*?[\]{}]/.test(s)).map((s) => s.replace(/^\.\//, '').replace(/\/+$/, ''));
  return (p) => plain.some((s) => s === '' || s === '.' || p === s || p.startsWith(`${s}/`)) || globs.some((g) => g(p));
}
