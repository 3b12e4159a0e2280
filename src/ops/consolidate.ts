/**
 * `consolidate`: merge an adapter version into a base version through the consolidate hook,
 * and record the merged model as a new version whose parents are the base and the adapter
 * (the user's consolidate_model.py: Backup → Verify → Version → Merge → Cleanup, abort on any
 * failure). Steps, each named in the error if it fails; nothing is committed or deleted
 * unless every step before the commit succeeded, and the work area is always removed:
 *   verify (both versions, every byte) → backup (pre_consolidation, when a backup store is
 *   configured) → materialise (base and adapter into tmp/) → merge (the hook) → validate
 *   (same tensors, dtypes and shapes as the base; finite values) → commit.
 * The default hook's built-in worker runs in-process instead (merge-stored.ts): verify (every
 * byte but the safetensors files of the two directories, which the merge proves whole as it
 * reads them) → backup → merge (from the store's chunks into its object sink; no work area) →
 * commit. There is no validate step: the output has the base's headers by construction, and the
 * kernel refuses a non-finite merged value; a tensor the adapter does not change is the base's
 * verified bytes, kept as they are (validate would refuse a base's own non-finite values there,
 * such as a -inf mask: the hook path still does).
 */
import { openReader } from './recipe.js';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { MstoreError } from '../lib/errors.js';
import type { Store } from '../repo/store.js';
import { resolveRev, readMeta, checkLineName } from '../repo/versions.js';
import { listVersionFiles, type VersionFile } from '../repo/version-files.js';
import { verify } from './integrity/verify.js';
import { chooseBackup, backupLocked } from './copy/backups.js';
import { checkout } from './checkout.js';
import { ContentWriter } from '../repo/content.js';
import { mergeStored } from './merge-stored.js';
import { VersionDir } from './stored-source.js';
import { identifyFile, pointerIdentity } from '../repo/identify.js';
import { encodeRecipe } from '../format/recipe.js';
import { reproducedByBuiltin, type Reproduced } from './hook-recipes.js';
import { gitMode, scanWorkspace } from '../repo/workspace.js';
import { readSafetensorsHeader, type SafetensorsHeader } from '../format/safetensors.js';
import { writeVersion } from '../repo/version-write.js';
import { packageRoot } from '../lib/package-files.js';
import { defaultHook, runHook, runsDefaultHook, storeHook } from '../repo/hooks.js';
import { defaultAuthor } from '../repo/version-write.js';
import type { FlatTree } from '../repo/git.js';

export const CONSOLIDATE_STEPS = ['resolve', 'verify', 'backup', 'materialise', 'merge', 'validate', 'commit'] as const;
export type ConsolidateStep = (typeof CONSOLIDATE_STEPS)[number];

export interface ConsolidateOptions {
  /** `REV` or `REV:PATH` (PATH: the model directory inside the version). */
  base: string;
  adapter: string;
  message?: string;
  /** Line of the merged version (default `merged`). */
  line?: string;
  /** Worker preference passed to the hook: auto (GPU torch if present, else built-in), python, builtin. */
  worker?: 'auto' | 'python' | 'builtin';
  /** The Python interpreter the hook may use (default MSTORE_PYTHON or python3). */
  python?: string;
  /** Each line the hook writes on stderr (progress). */
  onHookOutput?: (line: string) => void;
  onStep?: (step: ConsolidateStep) => void;
  /** In-process merge: merged bytes written so far, of `total`. */
  onProgress?: (p: { done: number; total: number }) => void;
  /**
   * How the in-process built-in merge keeps merged weight files (merge-stored.ts): as recipes
   * (default) or as bytes. A hook's output (a store's own hook, the torch worker) is kept as
   * recipes where the built-in merge reproduces it (hook-recipes.ts), unless 'bytes'.
   */
  keep?: 'recipe' | 'bytes';
}

export interface ConsolidateResult {
  version: string;
  commit: string;
  line: string;
  base: { version: string | undefined; commit: string; path: string };
  adapter: { version: string | undefined; commit: string; path: string };
  worker: string;
  device: string;
  seconds: number;
  backup: string | undefined;
  /** Merged weight files kept as their recipes (`keep: 'recipe'`), not as bytes. */
  recipes: number;
}

/** The job description the hook reads on stdin (docs/hooks.md). */
export interface ConsolidateJob {
  schema: 'mstore.consolidate/1';
  base: string;
  adapter: string;
  output: string;
  preferences: { worker: string; python: string };
  tools: { node: string; mstore: string; pythonWorker: string };
}

class StepError extends MstoreError {}

function fail(step: ConsolidateStep, e: unknown): never {
  const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
  throw new StepError(e instanceof MstoreError ? e.code : 'EBADINPUT', `consolidate failed at step '${step}', nothing committed: ${msg}`);
}

/** The store's hook if installed and executable, else the packaged default. */
async function hookPath(store: Store): Promise<string> {
  return (await storeHook(store.dir, 'consolidate')) ?? defaultHook('consolidate');
}

function splitSpec(spec: string): { rev: string; dir: string | undefined } {
  const i = spec.indexOf(':');
  if (i < 0) return { rev: spec, dir: undefined };
  const dir = spec.slice(i + 1).replace(/^\.?\/+|\/+$/g, '');
  return { rev: spec.slice(0, i), dir: dir === '.' ? '' : dir };
}

const dirOf = (p: string): string => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');
const inDir = (p: string, dir: string): boolean => dir === '' || p.startsWith(`${dir}/`);

/** The one directory of a version that holds a base model or an adapter, or the named one. */
function findModelDir(files: VersionFile[], kind: 'base' | 'adapter', given: string | undefined, what: string): string {
  const isAdapterDir = (d: string): boolean => files.some((f) => dirOf(f.path) === d && f.path.endsWith('adapter_config.json'));
  if (given !== undefined) {
    if (!files.some((f) => inDir(f.path, given))) throw new MstoreError('ENOTFOUND', `${what} has no directory '${given}'`, { what: given, where: what });
    return given;
  }
  const candidates = new Set<string>();
  for (const f of files) {
    const d = dirOf(f.path);
    const name = f.path.slice(d ? d.length + 1 : 0);
    if (kind === 'adapter') {
      if (name === 'adapter_config.json' || /lora.*\.safetensors$/i.test(name)) candidates.add(d);
    } else if ((name === 'config.json' || name.endsWith('.safetensors') || name.endsWith('.safetensors.index.json')) && !isAdapterDir(d) && !/lora/i.test(name)) {
      candidates.add(d);
    }
  }
  // A base directory that merely contains an adapter directory below it is still the base.
  const list = [...candidates].sort();
  if (list.length === 1) return list[0];
  if (!list.length) throw new MstoreError('EBADINPUT', `${what} holds no ${kind === 'base' ? 'base model (config.json, *.safetensors)' : 'adapter (adapter_config.json or a LoRA .safetensors)'}`);
  throw new MstoreError('EBADINPUT', `${what} holds several ${kind} candidates (${list.map((d) => d || '.').join(', ')}); name one as REV:PATH`);
}

/** The adapter argument for the worker: a PEFT directory, or a kohya LoRA file inside the directory. */
function adapterTarget(files: VersionFile[], dir: string, root: string): string {
  const here = files.filter((f) => dirOf(f.path) === dir);
  if (here.some((f) => f.path.endsWith('adapter_config.json'))) return path.join(root, ...dir.split('/').filter(Boolean));
  const lora = here.filter((f) => f.path.endsWith('.safetensors'));
  if (lora.length === 1) return path.join(root, ...lora[0].path.split('/'));
  throw new MstoreError('EBADINPUT', `adapter directory '${dir || '.'}' has no adapter_config.json and ${lora.length} .safetensors files; name one file`);
}

/** The safetensors headers of a model directory: one file, or the shards an index lists. */
async function modelHeaders(dir: string): Promise<Map<string, SafetensorsHeader>> {
  const out = new Map<string, SafetensorsHeader>();
  const names = (await readdir(dir)).filter((n) => n.endsWith('.safetensors')).sort();
  for (const n of names) {
    const fh = await open(path.join(dir, n), 'r');
    try {
      out.set(n, await readSafetensorsHeader(fh, (await fh.stat()).size));
    } catch (e) {
      throw new MstoreError('ECORRUPT', `${n}: ${(e as Error).message}`);
    } finally {
      await fh.close();
    }
  }
  return out;
}

/** Non-finite element count of a tensor region (BF16, F16, F32, F64 by exponent bits), read in windows. */
async function nonFinite(file: string, start: number, end: number, dtype: string): Promise<number> {
  const width = { BF16: 2, F16: 2, F32: 4, F64: 8 }[dtype];
  if (!width) return 0;
  const fh = await open(file, 'r');
  const buf = Buffer.alloc(16 * 1024 * 1024);
  let bad = 0;
  try {
    for (let pos = start; pos < end; ) {
      const n = Math.min(buf.length, end - pos);
      const { bytesRead } = await fh.read(buf, 0, n, pos);
      if (bytesRead !== n) throw new MstoreError('ECORRUPT', `${path.basename(file)} is truncated`);
      for (let o = 0; o + width <= n; o += width) {
        if (width === 2) {
          const v = buf.readUInt16LE(o);
          if (dtype === 'BF16' ? (v & 0x7f80) === 0x7f80 : (v & 0x7c00) === 0x7c00) bad++;
        } else if (width === 4) {
          if ((buf.readUInt32LE(o) & 0x7f800000) === 0x7f800000) bad++;
        } else if ((buf.readUInt32LE(o + 4) & 0x7ff00000) === 0x7ff00000) bad++;
      }
      pos += n;
    }
  } finally {
    await fh.close();
  }
  return bad;
}

/** The merged model must have the base's tensors (names, dtypes, shapes) with finite values. */
async function validateOutput(baseDir: string, outDir: string): Promise<void> {
  const base = await modelHeaders(baseDir);
  const out = await modelHeaders(outDir);
  if (!base.size) throw new MstoreError('EBADINPUT', 'the base directory has no .safetensors file');
  for (const [file, bh] of base) {
    const oh = out.get(file);
    if (!oh) throw new MstoreError('EBADINPUT', `the merged model lacks ${file}`);
    const ot = new Map(oh.tensors.map((t) => [t.name, t]));
    for (const t of bh.tensors) {
      const o = ot.get(t.name);
      if (!o) throw new MstoreError('EBADINPUT', `${file}: the merged model lacks tensor ${t.name}`);
      if (o.dtype !== t.dtype || o.shape.join(',') !== t.shape.join(',')) {
        throw new MstoreError('EBADINPUT', `${file}: tensor ${t.name} is ${o.dtype}[${o.shape}] in the merged model, ${t.dtype}[${t.shape}] in the base`);
      }
      const bad = await nonFinite(path.join(outDir, file), oh.dataStart + o.begin, oh.dataStart + o.end, o.dtype);
      if (bad) throw new MstoreError('EBADINPUT', `${file}: tensor ${t.name} has ${bad} non-finite value(s) in the merged model`);
    }
    if (oh.tensors.length !== bh.tensors.length) throw new MstoreError('EBADINPUT', `${file}: the merged model has ${oh.tensors.length} tensors, the base ${bh.tensors.length}`);
  }
}

/** Runs the hook with the job on stdin; resolves with its last stdout line parsed as JSON (or {}). */
async function runConsolidateHook(hook: string, job: ConsolidateJob, onLine?: (line: string) => void): Promise<{ worker?: string; device?: string }> {
  const run = await runHook(hook, { input: `${JSON.stringify(job)}\n`, captureStdout: true, onLine });
  if (run.startError) throw new MstoreError('EBADINPUT', `cannot run the hook ${hook}: ${run.startError.message}`);
  if (run.code !== 0) throw new MstoreError('EBADINPUT', `the hook ${hook} exited ${run.signal ?? run.code}${run.lastLine ? `: ${run.lastLine}` : ''}`);
  const last = run.stdout.trim().split('\n').pop() ?? '';
  try {
    return last ? (JSON.parse(last) as { worker?: string; device?: string }) : {};
  } catch {
    return {};
  }
}

/** Stores a directory's files as the content of a new version: flat tree, git blobs, bytes. */
async function ingestDirectory(
  store: Store,
  dir: string,
  asRecipes: Map<string, Reproduced>,
): Promise<{ flat: FlatTree; gitBlobs: Map<string, Buffer>; totalBytes: number; keptAsRecipes: number }> {
  const { files } = await scanWorkspace(dir);
  const sink = store.sink();
  const writer = new ContentWriter(sink, store.hasher, store.config.chunking);
  const flat: FlatTree = new Map();
  const gitBlobs = new Map<string, Buffer>();
  let totalBytes = 0;
  let keptAsRecipes = 0;
  try {
    for (const f of files) {
      const r = f.isLink ? undefined : asRecipes.get(f.path);
      let id: { blob: string; gitContent: Buffer; size: number };
      if (r) {
        // Reproduced by the built-in merge: its recipe is kept, not the bytes the hook wrote
        // (content the store holds already, in either form, stays as it is).
        const before = sink.newRecipes;
        await sink.addRecipe(Buffer.from(r.oid, 'hex'), encodeRecipe(r.recipe), `${f.path} (merged)`);
        if (sink.newRecipes > before || store.index.hasRecipe(Buffer.from(r.oid, 'hex'))) keptAsRecipes++;
        id = await pointerIdentity(store.repo, r.oid, r.size, 0);
      } else id = await identifyFile(store.repo, f, store.config.textMaxBytes, writer);
      flat.set(f.path, { mode: gitMode(f), blob: id.blob });
      gitBlobs.set(id.blob, id.gitContent);
      totalBytes += id.size;
    }
    await writer.finish();
  } catch (e) {
    await writer.abort();
    throw e;
  }
  return { flat, gitBlobs, totalBytes, keptAsRecipes };
}

function pythonOf(opts: ConsolidateOptions): string {
  return opts.python ?? process.env.MSTORE_PYTHON ?? 'python3';
}

/**
 * Whether the default hook would choose the built-in worker: asked for, or `auto` without torch
 * on CUDA (the hook's own rule, docs/hooks.md), which the probe below reproduces.
 */
async function builtinChosen(opts: ConsolidateOptions): Promise<boolean> {
  const want = opts.worker ?? 'auto';
  if (want !== 'auto') return want === 'builtin';
  const probe = await new Promise<string | undefined>((resolve) => {
    execFile(pythonOf(opts), ['-c', 'import torch,sys; sys.stdout.write("cuda" if torch.cuda.is_available() else "cpu")'], (err, stdout) => resolve(err ? undefined : stdout.trim()));
  });
  return probe !== 'cuda';
}

/** The safetensors files of a model directory (the weights the in-process merge reads). */
function safetensorsIn(dir: VersionDir): string[] {
  return dir.stored().filter((p) => !p.includes('/') && p.endsWith('.safetensors'));
}

export async function consolidate(store: Store, opts: ConsolidateOptions): Promise<ConsolidateResult> {
  const line = opts.line ?? 'merged';
  checkLineName(line);
  return store.withLock('consolidate', async () => {
    const started = Date.now();
    const step = (s: ConsolidateStep): ConsolidateStep => (opts.onStep?.(s), s);
    let current = step('resolve');
    const work = path.join(store.tmpDir, `consolidate-${randomBytes(6).toString('hex')}`);
    try {
      const b = splitSpec(opts.base);
      const a = splitSpec(opts.adapter);
      const baseCommit = await resolveRev(store.repo, b.rev);
      const adapterCommit = await resolveRev(store.repo, a.rev);
      if (baseCommit === adapterCommit && b.dir === a.dir && b.dir !== undefined) throw new MstoreError('EBADINPUT', 'base and adapter are the same directory');
      const baseMeta = await readMeta(store.repo, baseCommit);
      const adapterMeta = await readMeta(store.repo, adapterCommit);
      const baseName = baseMeta?.version ?? baseCommit.slice(0, 12);
      const adapterName = adapterMeta?.version ?? adapterCommit.slice(0, 12);
      const baseFiles = await listVersionFiles(store.repo, baseCommit);
      const adapterFiles = await listVersionFiles(store.repo, adapterCommit);
      const baseDir = findModelDir(baseFiles, 'base', b.dir, `base ${baseName}`);
      const adapterDir = findModelDir(adapterFiles, 'adapter', a.dir, `adapter ${adapterName}`);
      let backupName: string | undefined;
      let merged: { flat: FlatTree; gitBlobs: Map<string, Buffer>; totalBytes: number } | undefined;
      let hookOutput: string | undefined;
      let report: { worker?: string; device?: string; kernel?: string } = {};
      let adapterCfg: unknown;
      let keptAsRecipes = 0;
      let hookRecipes = new Map<string, Reproduced>();

      // The default hook's built-in worker runs here, in-process, reading the store and writing
      // into it (merge-stored.ts); a store's own hook and the torch worker get directories.
      const builtin = (await runsDefaultHook(store.dir, 'consolidate')) && (await builtinChosen(opts));
      // The adapter's directory, relative to the base's, when one version holds both and it lies inside.
      const adapterInBase = baseCommit === adapterCommit && adapterDir !== baseDir && inDir(adapterDir, baseDir) ? adapterDir.slice(baseDir ? baseDir.length + 1 : 0) : undefined;
      const reader = openReader(store);
      try {
        const baseView = new VersionDir(store.repo, reader, baseName, baseDir, baseFiles);
        const adapterView = new VersionDir(store.repo, reader, adapterName, adapterDir, adapterFiles);
        // The in-process merge reads weights from chunks; a base kept as recipes (a merged model
        // merged again) is rebuilt into the hook's work area instead.
        const inChunks = (dir: VersionDir): boolean => safetensorsIn(dir).every((rel) => dir.file(rel).kind !== 'lfs' || store.index.hasFile(Buffer.from(dir.file(rel).oid, 'hex')));
        const inProcess = builtin && inChunks(baseView) && inChunks(adapterView);
        // The in-process merge proves these whole as it reads them, before anything is committed:
        // verify does not read them first (every other file of both versions it reads).
        const proven = { base: inProcess ? safetensorsIn(baseView) : [], adapter: inProcess ? safetensorsIn(adapterView) : [] };
        const provenOids = new Set([...proven.base.map((r) => baseView.file(r).oid), ...proven.adapter.map((r) => adapterView.file(r).oid)]);

        current = step('verify');
        const checked = await verify(store, { commits: new Map([[baseCommit, [baseName]], [adapterCommit, [adapterName]]]), wholeOnReceipt: provenOids });
        // One damaged pack is one problem per file it holds: each said once.
        if (!checked.ok) throw new MstoreError('ECORRUPT', [...new Set(checked.problems.map((p) => p.message))].join('; '));

        current = step('backup');
        if (await chooseBackup(store)) {
          const rec = await backupLocked(store, {
            type: 'pre_consolidation',
            reason: `before merging ${adapterName} into ${baseName}`,
            versions: new Map([[baseCommit, [baseName]], [adapterCommit, [adapterName]]]),
          });
          backupName = rec.name;
        }

        if (inProcess) {
          current = step('merge');
          const m = await mergeStored(store, reader, baseView, adapterView, proven, { onProgress: (done, total) => opts.onProgress?.({ done, total }), exclude: adapterInBase, keep: opts.keep ?? 'recipe' });
          merged = m;
          report = { worker: 'mstore-ts', device: 'cpu', kernel: m.kernel };
          keptAsRecipes = m.keptAsRecipes;
        } else {
          current = step('materialise');
          await mkdir(work, { recursive: true });
          const baseRoot = path.join(work, 'base');
          const adapterRoot = path.join(work, 'adapter');
          // The work area is under the store's tmp/: a place of its own, not the store's files.
          await checkout(store, { rev: baseCommit, cwd: work, to: baseRoot, patterns: baseDir ? [baseDir] : [], allowInsideStore: true });
          await checkout(store, { rev: adapterCommit, cwd: work, to: adapterRoot, patterns: adapterDir ? [adapterDir] : [], allowInsideStore: true });
          const basePath = path.join(baseRoot, ...baseDir.split('/').filter(Boolean));
          // Nothing of the adapter is copied into the merged model, even when it lies inside the base.
          if (adapterInBase !== undefined) await rm(path.join(basePath, ...adapterInBase.split('/')), { recursive: true, force: true });
          const adapterPath = adapterTarget(adapterFiles, adapterDir, adapterRoot);
          const output = path.join(work, 'out');

          current = step('merge');
          const root = packageRoot();
          const cli = [path.join(root, 'dist', 'bundle', 'cli.js'), path.join(root, 'dist', 'src', 'cli.js')].find((p) => existsSync(p))!;
          const job: ConsolidateJob = {
            schema: 'mstore.consolidate/1',
            base: basePath,
            adapter: adapterPath,
            output,
            preferences: { worker: opts.worker ?? 'auto', python: pythonOf(opts) },
            tools: { node: process.execPath, mstore: cli, pythonWorker: path.join(root, 'workers', 'merge_lora.py') },
          };
          // Only what a hook may report: a kernel version is recorded for the built-in merge alone.
          const said = await runConsolidateHook(await hookPath(store), job, opts.onHookOutput);
          report = { worker: said.worker, device: said.device };
          if (!(await stat(output).catch(() => undefined))?.isDirectory()) throw new MstoreError('EBADINPUT', `the hook exited 0 but wrote no output directory ${output}`);

          current = step('validate');
          await validateOutput(basePath, output);
          // Each merged weight file the built-in merge reproduces bit for bit (run to check) is kept as its recipe.
          if ((opts.keep ?? 'recipe') === 'recipe' && inChunks(baseView) && inChunks(adapterView)) {
            hookRecipes = await reproducedByBuiltin(store, reader, baseView, adapterView, output, (done, total) => opts.onProgress?.({ done, total }));
          }

          hookOutput = output;
        }
        if ((await adapterView.list()).some((e) => e.path === 'adapter_config.json')) {
          try {
            adapterCfg = JSON.parse(await adapterView.text('adapter_config.json'));
          } catch {
            adapterCfg = undefined;
          }
        }
      } finally {
        await reader.close();
      }

      current = step('commit');
      const ingested = merged ? undefined : await ingestDirectory(store, hookOutput!, hookRecipes);
      const { flat, gitBlobs, totalBytes } = merged ?? ingested!;
      if (ingested) keptAsRecipes = ingested.keptAsRecipes;
      const seconds = (Date.now() - started) / 1000;
      const cfg = adapterCfg as { r?: number; lora_alpha?: number; use_rslora?: boolean } | undefined;
      const scaling = cfg?.r && cfg.lora_alpha !== undefined ? cfg.lora_alpha / (cfg.use_rslora ? Math.sqrt(cfg.r) : cfg.r) : undefined;
      const worker = report.worker ?? 'unknown';
      const kernel = report.kernel;
      const device = report.device ?? 'unknown';
      const written = await writeVersion(store, {
        line,
        flat,
        gitBlobs,
        totalBytes,
        message: opts.message ?? `merge ${adapterDir ? `${adapterName}:${adapterDir}` : adapterName} into ${baseDir ? `${baseName}:${baseDir}` : baseName}`,
        // Both versions are parents; one commit holding both the base and the adapter is one parent.
        parents: baseCommit === adapterCommit ? [baseCommit] : [baseCommit, adapterCommit],
        params: baseMeta?.params,
        meta: {
          consolidation: {
            base: { version: baseName, commit: baseCommit, path: baseDir },
            adapter: { version: adapterName, commit: adapterCommit, path: adapterDir, config: adapterCfg ?? null, scaling: scaling ?? null },
            worker,
            device,
            // The merge arithmetic's version (docs/merge.md), when the built-in merge made it.
            ...(kernel ? { kernel } : {}),
            seconds,
            backup: backupName ?? null,
          },
        },
        status: 'completed',
        author: defaultAuthor(),
        reason: 'consolidate',
      });
      return {
        version: written.version,
        commit: written.commit,
        line,
        base: { version: baseMeta?.version, commit: baseCommit, path: baseDir },
        adapter: { version: adapterMeta?.version, commit: adapterCommit, path: adapterDir },
        worker,
        device,
        seconds,
        backup: backupName,
        recipes: keptAsRecipes,
      };
    } catch (e) {
      if (e instanceof StepError) throw e;
      fail(current, e);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
}
