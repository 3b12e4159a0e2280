/**
 * `npm run bench:consolidate` (issue 19, acceptances 1-3 and 6): `mstore consolidate --worker builtin`
 * of a real ~0.9 GB Qwen3-shaped model (written by transformers, 4 shards) and a real peft
 * all-linear r=16 adapter takes <= 2x the wall time of `mstore merge-lora` on the same
 * directories, and at its peak uses <= 5 % of the model in extra disk (scratch), same run.
 *
 * bench/qwen3_model.py makes the model and the adapter (seeded) with the venv's transformers
 * and peft; both are committed to a store. Each rep runs, in alternating order and each after
 * `sync`: merge-lora into a new directory (removed after), and consolidate, as it runs by default
 * (merged weights kept as recipes) and with --store-bytes, whose merged version is then removed and
 * collected (`rm`, `gc --grace 0`) so every rep stores its output anew. The
 * store's own hook (the default, one comment longer, so it gets directories as before issue 19)
 * runs once as the anchor of what changed. Timings are process wall times (performance.now
 * around the process; node startup included), CPU and peak RSS from GNU time. Disk: the free
 * space of the file system is sampled every few milliseconds while a command runs; its extra
 * disk at peak is the lowest free space against the free space after it ended (scratch it
 * removed), its growth the free space before against after (what it stored).
 *
 * Then (acceptance 1-3) the merged weights kept as recipes, the default: the store's growth for
 * a consolidation against the merged version's size; a push of the merged version to a store that
 * holds its base and adapter, over a path and to S3 (where RGW runs: scripts/rgw-start.sh), in
 * bytes sent against the merged version's size, and over HTTP (`mstore serve`) to a box that holds
 * the base only (what a deploy sends), against the adapter's size; and a checkout of it (rebuilt from its recipes) against a checkout of
 * the same version kept as bytes (materialized in that store), interleaved after one untimed
 * checkout of each (the first read of a store after the runs above, which wrote gigabytes, finds
 * its packs out of the page cache: that measures the disk, not the rebuild), with the checkout's
 * peak RSS.
 *
 * Env: MSTORE_BENCH_DIR (work dir; default os.tmpdir()), MSTORE_BENCH_REPS (3),
 * MSTORE_BENCH_LAYERS (19: ~0.9 GB), MSTORE_HF_PYTHON (an interpreter with torch, transformers and
 * peft; default the venv `bash .ci/run` builds, then python3), MSTORE_BENCH_S3=0 (skip S3; what the
 * bench pushes there is deleted after). Exit status: 0 when every
 * acceptance figure passes, 1 otherwise.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, statfsSync, writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLI, DIST, GNU_TIME, MiB, cliLine, envNumber as num, median, run, secs, settle, table, x, type Row, workDir } from './lib.js';

const ROOT = path.resolve(DIST, '..');
const REPS = Math.max(1, Math.floor(num('MSTORE_BENCH_REPS', 3)));
const LAYERS = Math.max(1, Math.floor(num('MSTORE_BENCH_LAYERS', 19)));

function hfPython(): string {
  const tried = [process.env.MSTORE_HF_PYTHON, path.join(os.homedir(), '.cache', 'mstore', 'venv', 'bin', 'python'), 'python3'].filter((p): p is string => !!p);
  for (const p of tried) if (spawnSync(p, ['-c', 'import torch, transformers, peft'], { stdio: 'ignore' }).status === 0) return p;
  process.stderr.write(`bench: no Python with torch, transformers and peft among ${tried.join(', ')} (bash .ci/run builds the venv)\n`);
  process.exit(2);
}

const freeBytes = (dir: string): number => {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
};

interface Measured {
  ms: number;
  user: number;
  sys: number;
  maxKb: number;
  /** Lowest free space while it ran, against the free space after it ended. */
  extra: number;
  /** Free space before, against after. */
  growth: number;
}

/** Runs `node CLI args` under GNU time while sampling the file system's free space. */
async function measured(args: string[], cwd: string): Promise<Measured> {
  settle();
  const before = freeBytes(cwd);
  let low = before;
  const ru = path.join(os.tmpdir(), `mstore-bench-consolidate-${process.pid}.txt`);
  const timer = setInterval(() => (low = Math.min(low, freeBytes(cwd))), 3);
  const t = performance.now();
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(GNU_TIME!, ['-f', '%U %S %M', '-o', ru, process.execPath, CLI, ...args], { cwd, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (c) => {
      if (c !== 0) process.stderr.write(err);
      resolve(c);
    });
  });
  const ms = performance.now() - t;
  clearInterval(timer);
  if (code !== 0) throw new Error(`mstore ${args.join(' ')} exited ${code}`);
  settle();
  const after = freeBytes(cwd);
  low = Math.min(low, after);
  const [user, sys, maxKb] = readFileSync(ru, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  rmSync(ru, { force: true });
  return { ms, user, sys, maxKb, extra: after - low, growth: before - after };
}

const TOKEN = 'bench-consolidate-push-token-0123456789';

/** Removes what the bench pushed to S3 (every key under `prefix`). */
async function deletePrefix(env: Record<string, string>, bucket: string, prefix: string): Promise<void> {
  const sdk = await import('@aws-sdk/client-s3');
  const e = { ...process.env, ...env };
  const client = new sdk.S3Client({
    endpoint: e.AWS_ENDPOINT_URL,
    region: e.AWS_REGION ?? 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: e.AWS_ACCESS_KEY_ID ?? '', secretAccessKey: e.AWS_SECRET_ACCESS_KEY ?? '' },
  });
  try {
    for (;;) {
      const listed = await client.send(new sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/` }));
      const keys = (listed.Contents ?? []).map((o) => ({ Key: o.Key! }));
      if (!keys.length) return;
      await client.send(new sdk.DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
    }
  } finally {
    client.destroy();
  }
}

/** The S3 environment: AWS_ENDPOINT_URL set, or the env file scripts/rgw-start.sh writes; undefined without. */
function s3Env(): Record<string, string> | undefined {
  if (process.env.AWS_ENDPOINT_URL) return {};
  const file = path.join(process.env.CEPH_DIR ?? path.join(os.tmpdir(), 'mstore-rgw'), 'env');
  if (!existsSync(file)) return undefined;
  const env: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) env[m[1]] = m[2];
  }
  return env.AWS_ENDPOINT_URL ? env : undefined;
}

/**
 * Runs `fn` with `mstore serve` of the bare store `store` on a loopback port, added as remote
 * `bench-http` of the workspace `ws` (a push token in BENCH_TOKEN). The server's output goes to a
 * file: `fn` runs synchronously and must not leave it blocked on a full pipe.
 */
async function overHttp<T>(store: string, ws: string, fn: (remote: string) => T): Promise<T> {
  const tokens = path.join(path.dirname(store), 'tokens');
  writeFileSync(tokens, `push ${TOKEN}\n`);
  const log = path.join(path.dirname(store), 'serve.log');
  const fd = openSync(log, 'w');
  const child = spawn(process.execPath, [CLI, 'serve', store, '--listen', '127.0.0.1:0', '--tokens', tokens], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  try {
    let url: string | undefined;
    for (let i = 0; i < 300 && !url; i++) {
      await new Promise((r) => setTimeout(r, 100));
      url = /listening on (https?:\/\/\S+)/.exec(readFileSync(log, 'utf8'))?.[1];
      if (child.exitCode !== null) throw new Error(`mstore serve exited ${child.exitCode}: ${readFileSync(log, 'utf8')}`);
    }
    if (!url) throw new Error('mstore serve printed no "listening on" line in 30 s');
    run(process.execPath, [CLI, 'remote', 'add', 'bench-http', url, '--token-env', 'BENCH_TOKEN'], { cwd: ws });
    return fn('bench-http');
  } finally {
    child.kill('SIGTERM');
  }
}

async function main(): Promise<void> {
  if (!GNU_TIME) {
    process.stderr.write('bench: needs GNU time (/usr/bin/time)\n');
    process.exit(2);
  }
  const python = hfPython();
  const { root } = workDir('mstore-bench-consolidate-', 5 * 1024 * MiB);
  const ws = path.join(root, 'ws');
  const mstore = (args: string[]): string => run(process.execPath, [CLI, ...args], { cwd: ws }).stdout;
  const made = JSON.parse(run(python, [path.join(ROOT, 'bench', 'qwen3_model.py'), ws, String(LAYERS), '250MB']).stdout.trim().split('\n').pop()!) as {
    base_bytes: number;
    adapter_bytes: number;
    shards: string[];
  };
  mstore(['init']);
  mstore(['commit', '-m', 'base', 'base']);
  mstore(['commit', '-m', 'adapter', '--line', 'adapters', 'adapter']);
  process.stdout.write(
    `bench:consolidate — ${cliLine()}\nmodel: Qwen3-shaped, ${LAYERS} layers, ${(made.base_bytes / 1e9).toFixed(2)} GB in ${made.shards.length} shards (transformers); ` +
      `adapter: peft all-linear r=16, ${(made.adapter_bytes / 1e6).toFixed(1)} MB; python: ${python}; ${REPS} reps, ${os.availableParallelism()} cores\n\n`,
  );
  const hook = path.join(ws, '.mstore', 'hooks', 'consolidate');
  const shipped = readFileSync(hook);
  // Bytes kept, as before recipes: the time and disk figures compare like with like (acceptance 6).
  const consolidateArgs = ['consolidate', '--base', 'v001', '--adapter', 'adapters/v001', '--worker', 'builtin', '--store-bytes'];
  /** Removes the merged version and collects its data: the next consolidate stores its output anew. */
  const forget = (): void => {
    mstore(['rm', 'merged/latest', '--confirm', '--no-backup']);
    mstore(['gc', '--grace', '0']);
  };
  const t: { merge: Measured[]; streamed: Measured[]; recipes: Measured[] } = { merge: [], streamed: [], recipes: [] };
  const orders = [['merge', 'recipes', 'streamed'], ['recipes', 'streamed', 'merge'], ['streamed', 'merge', 'recipes']] as const;
  for (let i = 0; i < REPS; i++) {
    for (const who of orders[i % orders.length]) {
      if (who === 'merge') {
        const out = path.join(root, `out-${i}`);
        t.merge.push(await measured(['merge-lora', '--base', 'base', '--adapter', 'adapter', '--out', out], ws));
        rmSync(out, { recursive: true, force: true });
      } else {
        t[who].push(await measured(who === 'recipes' ? consolidateArgs.slice(0, -1) : consolidateArgs, ws));
        forget();
      }
    }
  }
  // The anchor: the same consolidate through the store's own hook (directories in scratch).
  writeFileSync(hook, `${shipped.toString()}\n// this store's own copy: consolidate hands it directories\n`);
  chmodSync(hook, 0o755);
  const hooked = await measured(consolidateArgs, ws);
  writeFileSync(hook, shipped);
  forget();

  // Recipes (the default) kept: push over a path and HTTP, checkout against bytes.
  mstore(consolidateArgs.slice(0, -1));
  const merged = JSON.parse(mstore(['show', 'merged/latest', '--json'])) as { files: { size: number }[] };
  const mergedBytes = merged.files.reduce((a, f) => a + f.size, 0);
  const remote = path.join(root, 'remote');
  mstore(['init', '--bare', remote]);
  mstore(['push', remote, 'v001', 'adapters/v001']);
  const pushed = JSON.parse(mstore(['push', remote, 'merged/latest', '--json'])) as { bytesSent: number; chunksSent: number };
  // The inference box holds the base only: the merged version costs its adapter (a deploy pushes it so).
  const http = path.join(root, 'remote-http');
  mstore(['init', '--bare', http]);
  mstore(['push', http, 'v001']);
  const viaHttp = await overHttp(http, ws, (url) => JSON.parse(run(process.execPath, [CLI, 'push', url, 'merged/latest', '--json'], { cwd: ws, env: { BENCH_TOKEN: TOKEN } }).stdout) as { bytesSent: number });
  // The remote keeps bytes (materialized there): checkouts of the same version, rebuilt against read.
  run(process.execPath, [CLI, 'materialize', 'merged/latest'], { cwd: remote });
  const co: { recipe: Measured[]; bytes: Measured[] } = { recipe: [], bytes: [] };
  const first: Partial<Record<'recipe' | 'bytes', Measured>> = {};
  for (const who of ['recipe', 'bytes'] as const) {
    const to = path.join(root, `co-${who}-warm`);
    first[who] = await measured(['checkout', 'merged/latest', '--to', to], who === 'recipe' ? ws : remote);
    rmSync(to, { recursive: true, force: true });
  }
  for (let i = 0; i < REPS; i++) {
    for (const who of i % 2 === 0 ? (['recipe', 'bytes'] as const) : (['bytes', 'recipe'] as const)) {
      const to = path.join(root, `co-${who}-${i}`);
      co[who].push(await measured(['checkout', 'merged/latest', '--to', to], who === 'recipe' ? ws : remote));
      rmSync(to, { recursive: true, force: true });
    }
  }

  // S3 (RGW, where `scripts/rgw-start.sh` left its environment) with base and adapter: last, as
  // RGW goes on writing what it received for a while (it would slow what runs next).
  // MSTORE_BENCH_S3=0 skips it (the test RGW keeps objects in memory: 8 GiB by default).
  const s3 = process.env.MSTORE_BENCH_S3 === '0' ? undefined : s3Env();
  let viaS3: { bytesSent: number } | undefined;
  if (s3) {
    const bucket = s3.MSTORE_S3_BUCKET ?? process.env.MSTORE_S3_BUCKET ?? 'mstore-test';
    const prefix = `bench-consolidate-${process.pid}-${Date.now().toString(36)}`;
    try {
      run(process.execPath, [CLI, 'push', `s3://${bucket}/${prefix}`, 'v001', 'adapters/v001'], { cwd: ws, env: s3 });
      viaS3 = JSON.parse(run(process.execPath, [CLI, 'push', `s3://${bucket}/${prefix}`, 'merged/latest', '--json'], { cwd: ws, env: s3 }).stdout) as { bytesSent: number };
    } finally {
      await deletePrefix(s3, bucket, prefix);
    }
  }
  const model = made.base_bytes;
  const gb = (b: number): string => `${(b / 1e9).toFixed(3)} GB`;
  const pct = (b: number): string => `${((100 * b) / model).toFixed(1)} %`;
  const all = (ms: Measured[], f: (m: Measured) => number, fmt: (n: number) => string): string => ms.map((m) => fmt(f(m))).join(', ');
  const mMerge = median(t.merge.map((m) => m.ms));
  const mStream = median(t.streamed.map((m) => m.ms));
  const mRecipes = median(t.recipes.map((m) => m.ms));
  const extra = Math.max(...t.streamed.map((m) => m.extra), ...t.recipes.map((m) => m.extra));
  const growth = median(t.recipes.map((m) => m.growth));
  const rows: Row[] = [];
  let pass = true;
  const accept = (r: Row & { pass: boolean }): void => {
    pass &&= r.pass;
    rows.push(r);
  };
  rows.push({ what: 'mstore merge-lora (directories)', value: secs(mMerge), ratio: '1.00x', target: 'anchor' });
  accept({ what: 'mstore consolidate --worker builtin', value: secs(mRecipes), ratio: `${x(mRecipes / mMerge)} merge-lora`, target: '<= 2.00x', pass: mRecipes <= 2 * mMerge });
  accept({ what: '  the same, --store-bytes', value: secs(mStream), ratio: `${x(mStream / mMerge)} merge-lora`, target: '<= 2.00x', pass: mStream <= 2 * mMerge });
  accept({ what: '  extra disk at its peak (max over reps, both)', value: gb(extra), ratio: `${pct(extra)} of the model`, target: '<= 5 %', pass: extra <= 0.05 * model });
  rows.push({ what: '  store growth, --store-bytes (median)', value: gb(median(t.streamed.map((m) => m.growth))), ratio: pct(median(t.streamed.map((m) => m.growth))), target: 'context (bytes kept)' });
  rows.push({ what: 'consolidate through its own hook (before)', value: secs(hooked.ms), ratio: `${x(hooked.ms / mMerge)} merge-lora`, target: 'context, one run' });
  rows.push({ what: '  extra disk at its peak', value: gb(hooked.extra), ratio: `${pct(hooked.extra)} of the model`, target: 'context' });
  rows.push({ what: 'merge-lora output on disk (its peak)', value: gb(median(t.merge.map((m) => m.growth + m.extra))), target: 'context' });
  const share = (b: number): string => `${((100 * b) / mergedBytes).toFixed(3)} % of the merged version`;
  accept({ what: 'consolidate, recipes kept (default): store growth', value: `${(growth / 1e6).toFixed(3)} MB`, ratio: share(growth), target: '<= 1 %', pass: growth <= 0.01 * mergedBytes });
  accept({ what: 'push of it to a store with base and adapter (path)', value: `${pushed.bytesSent} B`, ratio: share(pushed.bytesSent), target: '<= 1 %', pass: pushed.bytesSent <= 0.01 * mergedBytes });
  if (viaS3) accept({ what: '  the same to S3 (RGW)', value: `${viaS3.bytesSent} B`, ratio: share(viaS3.bytesSent), target: '<= 1 %', pass: viaS3.bytesSent <= 0.01 * mergedBytes });
  else rows.push({ what: '  the same to S3', value: 'skipped', target: 'no RGW environment (scripts/rgw-start.sh)' });
  const overAdapter = viaHttp.bytesSent - made.adapter_bytes;
  accept({
    what: 'push over HTTP to a box with the base only',
    value: `${(viaHttp.bytesSent / 1e6).toFixed(2)} MB`,
    ratio: `adapter + ${share(overAdapter)}`,
    target: '<= adapter + 1 %',
    pass: viaHttp.bytesSent <= made.adapter_bytes + 0.01 * mergedBytes,
  });
  const coBytes = median(co.bytes.map((m) => m.ms));
  const coRecipe = median(co.recipe.map((m) => m.ms));
  rows.push({ what: 'checkout of it, kept as bytes (warm)', value: secs(coBytes), ratio: '1.00x', target: 'anchor' });
  accept({ what: 'checkout of it, rebuilt from its recipes (warm)', value: secs(coRecipe), ratio: `${x(coRecipe / coBytes)} bytes`, target: '<= 3.00x', pass: coRecipe <= 3 * coBytes });
  const coRss = Math.max(...[first.recipe!, ...co.recipe].map((m) => m.maxKb / 1024));
  accept({ what: '  its peak RSS (max over all its checkouts)', value: `${coRss.toFixed(0)} MB`, target: '<= 300 MB', pass: coRss <= 300 });
  process.stdout.write(`${table(rows)}\n\n`);
  process.stdout.write(`checkout (wall): the untimed first, bytes ${secs(first.bytes!.ms)}, recipe ${secs(first.recipe!.ms)}; bytes ${all(co.bytes, (m) => m.ms, secs)}; recipe ${all(co.recipe, (m) => m.ms, secs)}; CPU user+sys: bytes ${all(co.bytes, (m) => m.user + m.sys, (n) => `${n.toFixed(2)} s`)}; recipe ${all(co.recipe, (m) => m.user + m.sys, (n) => `${n.toFixed(2)} s`)}\n`);
  const cpu = (n: number): string => `${n.toFixed(2)} s`;
  const rss = (ms: Measured[]): string => `${Math.max(...ms.map((m) => m.maxKb / 1024)).toFixed(0)} MB`;
  process.stdout.write(`all reps (wall): merge-lora ${all(t.merge, (m) => m.ms, secs)}; consolidate ${all(t.recipes, (m) => m.ms, secs)}; --store-bytes ${all(t.streamed, (m) => m.ms, secs)}\n`);
  process.stdout.write(
    `CPU user+sys: merge-lora ${all(t.merge, (m) => m.user + m.sys, cpu)}; consolidate ${all(t.recipes, (m) => m.user + m.sys, cpu)}; --store-bytes ${all(t.streamed, (m) => m.user + m.sys, cpu)}; own hook ${cpu(hooked.user + hooked.sys)}\n`,
  );
  process.stdout.write(`peak RSS: merge-lora ${rss(t.merge)}; consolidate ${rss(t.recipes)}; --store-bytes ${rss(t.streamed)}; own hook ${(hooked.maxKb / 1024).toFixed(0)} MB\n`);
  process.stdout.write(`extra disk per rep: consolidate ${all(t.recipes, (m) => m.extra, gb)}; --store-bytes ${all(t.streamed, (m) => m.extra, gb)}; growth per rep: consolidate ${all(t.recipes, (m) => m.growth, (n) => `${(n / 1e6).toFixed(3)} MB`)}\n`);
  process.exit(pass ? 0 : 1);
}

main().catch((e: Error) => {
  process.stderr.write(`bench:consolidate: ${e.message}\n`);
  process.exit(1);
});
