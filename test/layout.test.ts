/**
 * The layout's rules, read from the source (src/README.md): imports point down the layers only
 * (lib ← format ← repo ← ops ← remote ← deploy ← web ← cli; merge ← lib, format), transports import
 * only the Remote interface and the wire stream of remote/ and no other transport (the files
 * of one transport, `s3.ts` and `s3-*.ts`, may import each other), no import cycle (type-only imports
 * included), only cli/ touches the terminal or the process exit, no source file over 600 lines.
 * Each failure names the file and line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SRC = path.join(ROOT, 'src');

/** Layers, lowest first; a file may import its own layer and those below. */
const LAYERS = ['lib', 'format', 'repo', 'ops', 'remote', 'deploy', 'web', 'cli'];
/** merge depends on lib and format only; everything from ops up may use it. */
const MERGE_DEPS = ['lib', 'format', 'merge'];
/** What a transport may import from remote/ (the rest of remote/ is above the transports). */
const TRANSPORT_MAY_USE = ['remote/remote.ts', 'remote/wire.ts'];
const MAX_LINES = 600;

export interface Import {
  from: string; // src-relative file
  line: number;
  to: string; // src-relative target file
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out.sort();
}

/** Every relative import, static, dynamic, type-only or re-export, with its line. */
export function readImports(file: string, text: string): Import[] {
  const out: Import[] = [];
  const lines = text.split('\n');
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)'(\.{1,2}\/[^']+)'/g;
  lines.forEach((l, i) => {
    for (const m of l.matchAll(re)) {
      const target = path.normalize(path.join(path.dirname(file), m[1])).replace(/\.js$/, '.ts');
      out.push({ from: path.relative(SRC, file), line: i + 1, to: path.relative(SRC, target) });
    }
  });
  return out;
}

const top = (rel: string): string => rel.split(path.sep)[0];
const TRANSPORT_DIR = `remote${path.sep}transport${path.sep}`;
/** The transport a file of remote/transport/ belongs to: `s3` for s3.ts and s3-client.ts. */
const transportOf = (rel: string): string => path.basename(rel).replace(/[-.].*$/, '');

/** Why an import breaks the layering, or undefined when it is allowed. */
export function layerViolation(imp: Import): string | undefined {
  const a = top(imp.from);
  const b = top(imp.to);
  if (imp.to.startsWith('..')) return `imports ${imp.to}, outside src/`;
  if (a === 'merge') return MERGE_DEPS.includes(b) ? undefined : `merge/ may import only lib/ and format/, not ${b}/`;
  if (b === 'merge') return LAYERS.indexOf(a) >= LAYERS.indexOf('ops') ? undefined : `${a}/ is below merge/ and may not import it`;
  const la = LAYERS.indexOf(a);
  const lb = LAYERS.indexOf(b);
  if (la < 0 || lb < 0) return `${la < 0 ? a : b}/ is not a layer (src/README.md)`;
  if (lb > la) return `${a}/ may not import ${b}/ (upward: ${LAYERS.join(' <- ')})`;
  if (imp.from.startsWith(`remote${path.sep}transport${path.sep}`) && a === b && !imp.to.startsWith(`remote${path.sep}transport${path.sep}`)) {
    if (!TRANSPORT_MAY_USE.includes(imp.to.split(path.sep).join('/'))) return `a transport may import from remote/ only ${TRANSPORT_MAY_USE.join(', ')}`;
  }
  if (imp.from.startsWith(TRANSPORT_DIR) && imp.to.startsWith(TRANSPORT_DIR) && transportOf(imp.from) !== transportOf(imp.to)) {
    return 'a transport may not import another transport';
  }
  return undefined;
}

/** One cycle per strongly connected group, as a path of files with the lines that close it. */
export function findCycles(imports: Import[]): string[] {
  const edges = new Map<string, Import[]>();
  for (const i of imports) edges.set(i.from, [...(edges.get(i.from) ?? []), i]);
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: Import[] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    for (const e of edges.get(f) ?? []) {
      const s = state.get(e.to);
      if (s === 'open') {
        const start = stack.findIndex((x) => x.from === e.to);
        const loop = [...stack.slice(start < 0 ? stack.length : start), e];
        cycles.push(loop.map((x) => `${x.from}:${x.line}`).join(' -> ') + ` -> ${e.to}`);
      } else if (s === undefined) {
        stack.push(e);
        visit(e.to);
        stack.pop();
      }
    }
    state.set(f, 'done');
  };
  for (const f of [...edges.keys()].sort()) if (!state.has(f)) visit(f);
  return cycles;
}

/** Lines outside cli/ that print, exit, look at the terminal or choose colour. */
const TERMINAL = /process\.(stdout|stderr|exit\b|exitCode)|\bconsole\.|isTTY|NO_COLOR|FORCE_COLOR/;

const files = sourceFiles(SRC);
const texts = new Map(files.map((f) => [f, readFileSync(f, 'utf8')]));
const imports = files.flatMap((f) => readImports(f, texts.get(f)!));

test('every import points down the layers (or sideways within a layer)', () => {
  const bad = imports.flatMap((i) => {
    const why = layerViolation(i);
    return why ? [`src/${i.from}:${i.line}: ${why}`] : [];
  });
  assert.ok(bad.length === 0, bad.join('\n'));
});

test('no import cycle, type-only imports included', () => {
  const cycles = findCycles(imports);
  assert.ok(cycles.length === 0, cycles.join('\n'));
});

test('only cli/ prints, exits or looks at the terminal', () => {
  const bad: string[] = [];
  for (const [f, text] of texts) {
    const rel = path.relative(SRC, f);
    if (top(rel) === 'cli') continue;
    text.split('\n').forEach((l, i) => {
      const code = l.replace(/\/\/.*$/, '').replace(/^\s*\*.*$/, '');
      if (TERMINAL.test(code)) bad.push(`src/${rel}:${i + 1}: ${l.trim()}`);
    });
  }
  assert.ok(bad.length === 0, bad.join('\n'));
});

test(`no source file over ${MAX_LINES} lines`, () => {
  const long = files.flatMap((f) => {
    const n = texts.get(f)!.split('\n').length - 1;
    return n > MAX_LINES ? [`src/${path.relative(SRC, f)}: ${n} lines`] : [];
  });
  assert.ok(long.length === 0, long.join('\n'));
});

test('every top folder of src/ is a layer with a README.md', () => {
  for (const d of readdirSync(SRC)) {
    if (!statSync(path.join(SRC, d)).isDirectory()) continue;
    assert.ok(LAYERS.includes(d) || d === 'merge', `src/${d}/ is not a layer`);
    assert.ok(statSync(path.join(SRC, d, 'README.md'), { throwIfNoEntry: false })?.isFile(), `src/${d}/README.md is missing`);
  }
});

test('the checks can fail: an upward import, a cycle and a transport reaching into push are caught', () => {
  const up = readImports(path.join(SRC, 'lib/x.ts'), "import { Store } from '../repo/store.js';");
  assert.ok(layerViolation(up[0])?.includes('upward'));
  const typeOnly = readImports(path.join(SRC, 'format/x.ts'), "import type { Store } from '../ops/commit.js';");
  assert.ok(layerViolation(typeOnly[0]));
  const transport = readImports(path.join(SRC, 'remote/transport/x.ts'), "import { push } from '../push.js';");
  assert.ok(layerViolation(transport[0]));
  const sibling = readImports(path.join(SRC, 'remote/transport/s3.ts'), "import { S3Bucket } from './s3-client.js';");
  assert.is(layerViolation(sibling[0]), undefined);
  const across = readImports(path.join(SRC, 'remote/transport/s3-client.ts'), "import { readAhead } from './http-server.js';");
  assert.ok(layerViolation(across[0])?.includes('another transport'));
  const dynamic = readImports(path.join(SRC, 'merge/x.ts'), "const m = await import('../repo/pack.js');");
  assert.ok(layerViolation(dynamic[0]));
  const a = readImports(path.join(SRC, 'repo/a.ts'), "import type { B } from './b.js';");
  const b = readImports(path.join(SRC, 'repo/b.ts'), "import { a } from './a.js';");
  assert.equal(findCycles([...a, ...b]).length, 1);
});

test.run();
