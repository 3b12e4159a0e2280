/**
 * What the benchmarks share: which CLI to time, environment knobs, timing a real process
 * (with CPU and peak RSS from GNU time), page-cache helpers, medians and the result table.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const MiB = 2 ** 20;
export const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const SRC_CLI = path.join(DIST, 'src', 'cli', 'main.js');
export const BUNDLE_CLI = path.join(DIST, 'bundle', 'cli.js');
const bundleFresh = existsSync(BUNDLE_CLI) && existsSync(SRC_CLI) && statSync(BUNDLE_CLI).mtimeMs >= statSync(SRC_CLI).mtimeMs;
/** MSTORE_BENCH_CLI, else the esbuild bundle when it is at least as new as dist/src/cli/main.js. */
export const CLI = path.resolve(process.env.MSTORE_BENCH_CLI ?? (bundleFresh ? BUNDLE_CLI : SRC_CLI));

/** `cli: <path>`, with a warning when the bundle is older than the compiled sources. */
export function cliLine(): string {
  const note = CLI === SRC_CLI && existsSync(BUNDLE_CLI) ? ' (bundle older than dist/src: run `npm run build` to bench the bundle)' : '';
  return `cli: ${path.relative(process.cwd(), CLI) || CLI}${note}`;
}

/** A non-negative number from the environment. */
export function envNumber(name: string, dflt: number): number {
  const v = Number(process.env[name] ?? dflt);
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must be a non-negative number`);
  return v;
}

export interface Ran {
  ms: number;
  stdout: string;
  stderr: string;
  /** CPU seconds of the child (user, sys) and its peak RSS in KB, from GNU time when present. */
  cpu?: { user: number; sys: number; maxKb: number };
}

export const GNU_TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
let rusageSeq = 0;

/**
 * Runs a real process and times it with performance.now() around spawnSync; throws unless it
 * exits 0. With `rusage`, it runs under GNU time (`-o FILE`, so its output stays apart; ~1 ms)
 * to record CPU and peak RSS.
 */
export function run(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string>; rusage?: boolean } = {}): Ran {
  const ru = opts.rusage && GNU_TIME ? path.join(os.tmpdir(), `mstore-bench-rusage-${process.pid}-${rusageSeq++}.txt`) : undefined;
  const [file, argv] = ru ? [GNU_TIME!, ['-f', '%U %S %M', '-o', ru, cmd, ...args]] : [cmd, args];
  const t = performance.now();
  const r = spawnSync(file, argv, { cwd: opts.cwd, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', ...opts.env }, maxBuffer: 64 * MiB });
  const ms = performance.now() - t;
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} ${r.signal ? `killed by ${r.signal}` : `exited ${r.status}`}: ${r.stderr}${r.stdout}`);
  let cpu: Ran['cpu'];
  if (ru) {
    const [user, sys, maxKb] = readFileSync(ru, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
    rmSync(ru, { force: true });
    cpu = { user, sys, maxKb };
  }
  return { ms, stdout: r.stdout, stderr: r.stderr, cpu };
}

export const have = (cmd: string, args: string[]): boolean => {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !r.error && r.status === 0;
};

/**
 * Start each timed step with no dirty pages (drop_caches is not possible here). No pause after
 * `sync`: on this VM (virtio-balloon free page reporting) page-cache pages freed more than ~2 s
 * earlier go back to the host, and writing 1 GiB into fresh ones costs 2-3 s of system time
 * instead of ~0.4 s, for cp and mstore alike; a pause makes that random, not fairer.
 */
export function settle(): void {
  spawnSync('sync');
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Reads a file once through a fixed buffer, so that it sits in the page cache. */
export function warm(file: string): void {
  const buf = Buffer.allocUnsafe(8 * MiB);
  const fd = openSync(file, 'r');
  try {
    while (readSync(fd, buf, 0, buf.length, null) > 0);
  } finally {
    closeSync(fd);
  }
}

export const secs = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
export const mib = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;
export const x = (r: number): string => `${r.toFixed(2)}x`;

export interface Row {
  what: string;
  value: string;
  ratio?: string;
  target?: string;
  pass?: boolean;
}

/** The result table: what, value, ratio, target, PASS/FAIL. */
export function table(list: Row[]): string {
  const cols = ['what', 'value', 'ratio', 'target'] as const;
  const cell = (r: Row, k: (typeof cols)[number]): string => String(r[k] ?? '');
  const w = cols.map((k) => Math.max(k.length, ...list.map((r) => cell(r, k).length)) + 2);
  const line = (cells: string[], res: string): string => `${cells.map((c, i) => c.padEnd(w[i])).join('')}${res}`.trimEnd();
  const out = [line([...cols], 'result'), line(w.map((n) => '-'.repeat(n - 2)), '------')];
  for (const r of list) out.push(line(cols.map((k) => cell(r, k)), r.pass === undefined ? '' : r.pass ? 'PASS' : 'FAIL'));
  return out.join('\n');
}

/**
 * The bench's scratch directory under MSTORE_BENCH_DIR (default the OS temp dir): refuses
 * (exit 2) when less than `needBytes` is free there; removed by `cleanup()`, and at the latest
 * on exit or SIGINT/SIGTERM/SIGHUP.
 */
export function workDir(prefix: string, needBytes: number): { root: string; cleanup: () => void } {
  const base = path.resolve(process.env.MSTORE_BENCH_DIR ?? os.tmpdir());
  mkdirSync(base, { recursive: true });
  const fs = statfsSync(base);
  const free = fs.bavail * fs.bsize;
  if (free < needBytes) {
    process.stderr.write(`bench: ${base} has ${(free / 2 ** 30).toFixed(1)} GiB free, needs ~${(needBytes / 2 ** 30).toFixed(1)} GiB (set MSTORE_BENCH_DIR)\n`);
    process.exit(2);
  }
  const root = mkdtempSync(path.join(base, prefix));
  let cleaned = false;
  const cleanup = (): void => {
    if (cleaned) return;
    cleaned = true;
    rmSync(root, { recursive: true, force: true });
  };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      cleanup();
      process.exit(130);
    });
  }
  return { root, cleanup };
}

/**
 * The anchor: PUT /discard drops the body, PUT /file writes and fsyncs it, PUT /verified also
 * hashes it (the least a receiver that re-hashes what it gets must do), GET /file serves it.
 */
export const UPLOAD_SINK = `
const http = require('node:http'), fs = require('node:fs'), crypto = require('node:crypto');
const file = process.argv[2];
const server = http.createServer((req, res) => {
  if (req.method === 'PUT' && req.url === '/discard') {
    let n = 0;
    req.on('data', (b) => (n += b.length));
    req.on('end', () => res.end(String(n)));
  } else if (req.method === 'PUT' && (req.url === '/file' || req.url === '/verified')) {
    const h = req.url === '/verified' ? crypto.createHash('sha256') : undefined;
    if (h) req.on('data', (b) => h.update(b));
    const out = fs.createWriteStream(file);
    req.pipe(out);
    out.on('finish', () => { const fd = fs.openSync(file, 'r'); fs.fsyncSync(fd); fs.closeSync(fd); res.end(h ? h.digest('hex') : 'ok'); });
  } else if (req.method === 'GET' && req.url === '/file') {
    res.writeHead(200, { 'content-length': fs.statSync(file).size });
    fs.createReadStream(file, { highWaterMark: 1 << 20 }).pipe(res);
  } else { res.statusCode = 404; res.end(); }
});
server.listen(0, '127.0.0.1', () => console.log('listening on http://127.0.0.1:' + server.address().port));
`;
