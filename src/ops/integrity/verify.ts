/**
 * `verify`: proves that versions can be checked out byte for byte. For each version: the
 * commit, its tree, every blob (git re-hashes each object it reads), the metadata record,
 * every lfs pointer; then, per distinct file, the manifest, each chunk's index entry
 * against its pack's own table, and the bytes: every distinct file re-hashed to its oid
 * (restic check --read-data), with every chunk re-hashed to its id as well when `chunkIds`
 * is set, else only in a file that fails, to name the damaged chunks. Quick mode stops
 * before the bytes; sample mode re-hashes a random share of the chunks (--read-data-subset).
 */
import { openReader } from '../recipe.js';
import { stat } from 'node:fs/promises';
import { MstoreError } from '../../lib/errors.js';
import { availableParallelism } from 'node:os';
import { INLINE_HASH_BYTES, ParallelHasher, sha256 } from '../../lib/hashing.js';
import type { Store } from '../../repo/store.js';
import type { ContentReader } from '../../repo/content-reader.js';
import { packPath, readPackTable, ENTRY_CHUNK, type PackEntry } from '../../repo/pack.js';
import { META_SCHEMA, readMeta, resolveRev } from '../../repo/versions.js';
import { parsePointer } from '../../format/pointer.js';
import { parseRecipe, recipeInputs, type Recipe } from '../../format/recipe.js';
import { MERGE_KERNEL } from '../../merge/kernel.js';
import { refRoots, type Roots } from '../../repo/reach.js';
import { indexPageProblems } from '../../repo/index-check.js';
import { indexDamaged } from '../../repo/index-db.js';

export type VerifyMode = 'full' | 'quick' | 'sample';

/** A chunk's place in the seeded sample order: a fraction in [0, 1). */
function sampleKey(seed: number, id: Buffer): number {
  return sha256(Buffer.concat([Buffer.from(`mstore-sample ${seed} `), id])).readUInt32BE(0) / 2 ** 32;
}

export interface VerifyOptions {
  /** Revisions to check; with neither `revs` nor `commits`, every version a ref reaches. */
  revs?: string[];
  /** Commits to check with the names to report them by (used by backup and gc). */
  commits?: Roots;
  mode?: VerifyMode;
  /** Share of chunks to re-read in sample mode, 0 < p <= 100. */
  samplePercent?: number;
  /**
   * Full mode: also re-hash every chunk to its id (a second sha256 pass). Without it, each
   * distinct file is re-hashed once to its oid, which proves every byte a checkout would
   * produce; chunk ids are then re-hashed only in files that fail, to name the damage.
   */
  chunkIds?: boolean;
  /**
   * Files (oids) whose bytes this process hashed to their oid as they arrived (a push or pull,
   * repo/receipt.ts): full mode does not read them back. Presence and placement are still checked.
   */
  wholeOnReceipt?: ReadonlySet<string>;
  random?: () => number;
  /**
   * Sample mode: choose the chunks by seed instead of at random. A chunk is read when
   * sha256("mstore-sample <seed> <chunk id>") read as a fraction falls below the share, so the
   * same seed reads the same chunks of a store, whatever the order it lists them in.
   */
  sampleSeed?: number;
  onProgress?: (p: { done: number; total: number }) => void;
}

export interface Problem {
  /** The versions (names) affected. */
  versions: string[];
  /** "version:path" uses of the damaged file, when a file is affected. */
  files: string[];
  chunk?: string;
  pack?: string;
  message: string;
  /** Content present but kept as a recipe of a merge kernel this mstore does not implement. */
  unsupported?: boolean;
}

export interface VersionReport {
  name: string;
  commit: string;
  ok: boolean;
  /** Every file's content is in the store, whether or not this mstore can read all of it (ok, or only recipes of a kernel it lacks). */
  present: boolean;
  problems: string[];
}

export interface VerifyResult {
  ok: boolean;
  mode: VerifyMode;
  versions: VersionReport[];
  problems: Problem[];
  /** Distinct files, chunks and bytes checked. */
  files: number;
  chunks: number;
  bytes: number;
  seconds: number;
}

interface FileUse {
  size: number;
  uses: { version: string; path: string }[];
}

type PackTable = Map<number, PackEntry> | Error;

export function verify(store: Store, opts: VerifyOptions = {}): Promise<VerifyResult> {
  return store.withReadLock('verify', async () => {
    const damage = indexPageProblems(store.indexDir, 1);
    if (damage.length) throw indexDamaged(store.indexDir, damage[0]);
    return verifyLocked(store, opts);
  });
}

async function verifyLocked(store: Store, opts: VerifyOptions): Promise<VerifyResult> {
  const started = process.hrtime.bigint();
  const mode = opts.mode ?? 'full';
  if (mode === 'sample' && !(opts.samplePercent! > 0 && opts.samplePercent! <= 100)) {
    throw new MstoreError('EUSAGE', `--sample takes a percentage in (0, 100], got ${opts.samplePercent}`);
  }
  const repo = store.repo;
  repo.forgetReads();
  const index = store.index;
  const problems: Problem[] = [];
  const byVersion = new Map<string, VersionReport>();

  let targets: Roots;
  if (opts.commits) targets = opts.commits;
  else if (opts.revs?.length) {
    targets = new Map();
    for (const rev of opts.revs) {
      const c = await resolveRev(repo, rev);
      targets.set(c, [...(targets.get(c) ?? []), rev]);
    }
  } else {
    const r = await refRoots(repo);
    targets = r.roots;
    // A ref whose version record cannot be read is a damaged version, named like the others.
    const broken = new Map<string, string[]>();
    for (const p of r.problems) broken.set(p.oid ?? p.ref, [...(broken.get(p.oid ?? p.ref) ?? []), p.ref]);
    for (const [oid, refs] of broken) {
      const name = preferredName(refs);
      byVersion.set(oid, { name, commit: oid, ok: true, present: true, problems: [] });
      const msg = r.problems.find((p) => (p.oid ?? p.ref) === oid)!.message.replace(/^\S+ -> /, '');
      problems.push({ versions: [name], files: [], message: `${name}: version record ${msg}` });
    }
  }

  const report = (name: string, commit: string): VersionReport => {
    let v = byVersion.get(commit);
    if (!v) byVersion.set(commit, (v = { name, commit, ok: true, present: true, problems: [] }));
    return v;
  };
  const fail = (p: Problem): void => {
    problems.push(p);
  };

  // 1. Version records: commit, metadata, tree, blobs, pointers.
  const files = new Map<string, FileUse>();
  for (const [commit, names] of targets) {
    let name = preferredName(names);
    const v = report(name, commit);
    try {
      const c = await repo.readCommit(commit);
      const meta = await readMeta(repo, commit).catch((e: Error) => {
        throw new Error(`metadata: ${e.message}`);
      });
      if (!meta) throw new Error('the metadata record .mstore/version.json is missing');
      if (meta.schema !== META_SCHEMA) throw new Error(`metadata schema is '${String(meta.schema)}', expected ${META_SCHEMA}`);
      if (meta.version) v.name = name = meta.version;
      // What the version's files say, kept aside until its whole tree is read (a tree that
      // turns out to hold a bad entry is the version's damage, and none of its files count).
      const found: { path: string; oid: string; size: number }[] = [];
      const fileProblems: Problem[] = [];
      const versionName = name;
      const note = (p: string, e: { mode: string; oid: string }, small: Buffer | null): void => {
        if (e.mode === '120000') return;
        const ptr = small && parsePointer(small, `${versionName}:${p}`);
        if (!ptr) {
          repo.noteNotPointer(e.oid);
          return;
        }
        found.push({ path: p, oid: ptr.oid, size: ptr.size });
      };
      await repo.forEachModelFile(c.tree, (dir, e) => {
        // Each distinct blob is read (re-hashed) once per run, however many versions hold it.
        if (repo.isKnownNotPointer(e.oid)) return;
        const small = repo.knownPointerCandidate(e.oid);
        if (small !== undefined) return note(dir + e.name, e, small);
        return repo.pointerCandidate(e.oid).then(
          (read) => note(dir + e.name, e, read),
          (err: unknown) => {
            const p = dir + e.name;
            fileProblems.push({ versions: [versionName], files: [`${versionName}:${p}`], message: `${versionName}:${p}: git object ${e.oid} is damaged (${firstLine(err)})` });
          },
        );
      });
      for (const p of fileProblems) fail(p);
      for (const f of found) {
        const use = files.get(f.oid);
        if (use) {
          use.uses.push({ version: name, path: f.path });
          if (use.size !== f.size) fail({ versions: [name], files: [`${name}:${f.path}`], message: `${name}:${f.path}: pointer says ${f.size} bytes, another pointer to ${f.oid} says ${use.size}` });
        } else files.set(f.oid, { size: f.size, uses: [{ version: name, path: f.path }] });
      }
    } catch (e) {
      fail({ versions: [name], files: [], message: `${name}: version record ${commit.slice(0, 12)} is damaged (${firstLine(e)})` });
    }
  }

  // 2. Presence: manifests, chunk entries against the packs' own tables.
  const tables = new Map<string, Promise<PackTable>>();
  const table = (pack: string): Promise<PackTable> => {
    let t = tables.get(pack);
    if (!t) {
      t = readPackTable(store.packsDir, pack).then(
        (entries) => new Map(entries.filter((e) => e.type === ENTRY_CHUNK).map((e) => [e.offset, e])),
        (e: NodeJS.ErrnoException) => new Error(e.code === 'ENOENT' ? `pack ${pack} is missing` : firstLine(e)),
      );
      tables.set(pack, t);
    }
    return t;
  };
  const sound: string[] = [];
  const chunkLocs = new Map<string, { id: Buffer; pack: string; offset: number; length: number; oid: string }>();
  let totalBytes = 0;
  // Content kept as a recipe (docs/format.md §18): the record must parse and name this mstore's
  // kernel, and its inputs are checked here like any file (the rebuild reads them in step 3).
  const recipes: string[] = [];
  const todo = [...files].map(([oid, use]) => ({ oid, use, input: undefined as string | undefined }));
  const queued = new Set(files.keys());
  for (const { oid, use, input } of todo) {
    const { where, label: uses } = usesOf(use);
    const label = uses + (input ? ` (its recipe's input ${input})` : '');
    const f = index.file(Buffer.from(oid, 'hex'));
    const record = f || input ? undefined : index.recipe(Buffer.from(oid, 'hex'));
    if (record) {
      let recipe: Recipe;
      try {
        recipe = parseRecipe(record, `${label}: recipe of ${oid}`);
      } catch (e) {
        fail({ ...where, message: firstLine(e) });
        continue;
      }
      if (recipe.kernel !== MERGE_KERNEL) {
        fail({ ...where, unsupported: true, message: `${label}: content ${oid} is rebuilt by merge kernel ${recipe.kernel}; this mstore implements ${MERGE_KERNEL} only: use an mstore that implements ${recipe.kernel}` });
        continue;
      }
      if (recipe.size !== use.size) {
        fail({ ...where, message: `${label}: the recipe of ${oid} makes ${recipe.size} bytes, the pointer says ${use.size}` });
        continue;
      }
      for (const i of recipeInputs(recipe)) {
        if (queued.has(i.oid)) continue;
        queued.add(i.oid);
        todo.push({ oid: i.oid, use: { size: i.size, uses: use.uses }, input: i.name });
      }
      recipes.push(oid);
      totalBytes += use.size;
      continue;
    }
    if (!f) {
      fail({ ...where, message: `${label}: content ${oid} is missing (no file manifest in the index)` });
      continue;
    }
    if (input && !files.has(oid)) files.set(oid, use);
    let okFile = true;
    const total = f.chunks.reduce((a, c) => a + c.length, 0);
    if (total !== f.size || f.size !== use.size) {
      fail({ ...where, message: `${label}: manifest of ${oid} adds up to ${total} bytes, the pointer says ${use.size}` });
      okFile = false;
    }
    for (const c of f.chunks) {
      const key = c.id.toString('hex');
      const loc = index.chunk(c.id);
      if (!loc) {
        fail({ ...where, chunk: key, message: `${label}: chunk ${key} is missing from the index` });
        okFile = false;
        continue;
      }
      const t = await table(loc.pack);
      if (t instanceof Error) {
        fail({ ...where, chunk: key, pack: loc.pack, message: `${label}: ${t.message}` });
        okFile = false;
        continue;
      }
      const e = t.get(loc.offset);
      if (!e || !e.id.equals(c.id) || e.length !== c.length || loc.length !== c.length) {
        fail({ ...where, chunk: key, pack: loc.pack, message: `${label}: chunk ${key} is not where the index says (pack ${loc.pack} offset ${loc.offset})` });
        okFile = false;
        continue;
      }
      if (!chunkLocs.has(key)) chunkLocs.set(key, { id: c.id, ...loc, oid });
    }
    if (okFile) {
      sound.push(oid);
      totalBytes += f.size;
    }
  }

  // 3. Bytes.
  let bytes = 0;
  let chunks = 0;
  const reader = openReader(store);
  // The hash workers start only where a file is big enough to use one (INLINE_HASH_BYTES).
  const big = mode === 'full' && sound.some((oid) => files.get(oid)!.size > INLINE_HASH_BYTES);
  if (big) store.hasher.warm();
  try {
    if (mode === 'full') {
      const verified = new Set<string>();
      // Two files at a time where there are two cores, each hashed on its own worker thread
      // (a first push of a long history re-reads gigabytes of distinct files on arrival).
      // Problems are reported in file order, whichever lane found them.
      const byFile: Problem[][] = sound.map(() => []);
      let nextFile = 0;
      const lane = async (r: ContentReader): Promise<void> => {
        for (let i = nextFile++; i < sound.length; i = nextFile++) {
          const oid = sound[i];
          if (opts.wholeOnReceipt?.has(oid) && !opts.chunkIds) {
            bytes += files.get(oid)!.size;
            opts.onProgress?.({ done: bytes, total: totalBytes });
            continue;
          }
          const use = files.get(oid)!;
          const { where, label } = usesOf(use);
          try {
            const res = await r.check(oid, verified, {
              chunkIds: opts.chunkIds,
              onBytes: (n) => {
                bytes += n;
                opts.onProgress?.({ done: bytes, total: totalBytes });
              },
            });
            for (const d of res.damaged) byFile[i].push({ ...where, chunk: d.chunk, pack: d.pack, message: `${label}: chunk ${d.chunk} in pack ${d.pack} is damaged (hash mismatch)` });
            if (!res.damaged.length && res.digest !== oid) byFile[i].push({ ...where, message: `${label}: content hashes to ${res.digest}, expected ${oid} (file manifest damaged)` });
          } catch (e) {
            byFile[i].push({ ...where, message: `${label}: ${firstLine(e)}` });
          }
        }
      };
      const toRead = sound.filter((oid) => !(opts.wholeOnReceipt?.has(oid) && !opts.chunkIds)).length;
      const second = availableParallelism() > 1 && toRead > 1 ? new ParallelHasher() : undefined;
      const secondReader = second && openReader(store, second);
      try {
        if (big) second?.warm();
        await Promise.all([lane(reader), ...(secondReader ? [lane(secondReader)] : [])]);
      } finally {
        await secondReader?.close();
        await second?.close();
      }
      for (const ps of byFile) for (const p of ps) fail(p);
      chunks = opts.chunkIds ? verified.size : chunkLocs.size;
      // Content kept as a recipe: rebuilt and hashed to its id (the read throws otherwise).
      for (const oid of recipes) {
        const use = files.get(oid)!;
        // Rebuilt and hashed on receipt (a push received): not rebuilt again.
        if (opts.wholeOnReceipt?.has(oid) && !opts.chunkIds) {
          bytes += use.size;
          continue;
        }
        const { where, label } = usesOf(use);
        await reader
          .read(oid, label, () => undefined, (n) => {
            bytes += n;
            opts.onProgress?.({ done: bytes, total: totalBytes });
          })
          .catch((e: unknown) => fail({ ...where, message: firstLine(e).startsWith(label) ? firstLine(e) : `${label}: ${firstLine(e)}` }));
      }
    } else if (mode === 'sample') {
      const rnd = opts.random ?? Math.random;
      const seed = opts.sampleSeed;
      const draw = seed === undefined ? () => rnd() : (c: { id: Buffer }) => sampleKey(seed, c.id);
      const share = opts.samplePercent! / 100;
      const all = [...chunkLocs.values()].map((c) => ({ c, key: draw(c) }));
      const picked = all.filter((x) => x.key < share).map((x) => x.c);
      if (!picked.length && all.length) picked.push(all.reduce((a, b) => (b.key < a.key ? b : a)).c);
      const total = picked.reduce((a, c) => a + c.length, 0);
      for (const c of picked) {
        const use = files.get(c.oid)!;
        const { where } = usesOf(use);
        const ok = await reader.checkChunk(c.id, c).catch(() => false);
        if (!ok) fail({ ...where, chunk: c.id.toString('hex'), pack: c.pack, message: `${where.files[0]}: chunk ${c.id.toString('hex')} in pack ${c.pack} is damaged (hash mismatch)` });
        bytes += c.length;
        chunks++;
        opts.onProgress?.({ done: bytes, total });
      }
    } else {
      // quick: the pack files must at least be as long as their tables say (readPackTable checked that).
      // One stat per pack, not per chunk (thousands of chunks live in a few hundred packs).
      const sizes = new Map<string, Promise<number | undefined>>();
      const sizeOf = (pack: string): Promise<number | undefined> => {
        let s = sizes.get(pack);
        if (!s) sizes.set(pack, (s = stat(packPath(store.packsDir, pack)).then((st) => st.size, () => undefined)));
        return s;
      };
      for (const c of chunkLocs.values()) {
        const size = await sizeOf(c.pack);
        if (size === undefined || size < c.offset + c.length) fail({ versions: [], files: [], chunk: c.id.toString('hex'), pack: c.pack, message: `pack ${c.pack} is shorter than chunk ${c.id.toString('hex')} needs` });
      }
    }
  } finally {
    await reader.close();
  }

  for (const p of problems) {
    for (const name of p.versions) {
      for (const v of byVersion.values()) {
        if (v.name === name) {
          v.ok = false;
          v.present &&= !!p.unsupported;
          v.problems.push(p.message);
        }
      }
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const versions = [...byVersion.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { ok: problems.length === 0, mode, versions, problems, files: files.size, chunks, bytes, seconds };
}

/** A version tag's name if one of the refs is one, else the first ref's short name. */
function preferredName(refs: string[]): string {
  const names = refs.map(shortName);
  return names.find((n) => /(^|\/)v[0-9]+$/.test(n)) ?? names.find((n) => !n.endsWith('latest')) ?? names[0];
}

function shortName(ref: string): string {
  return ref.replace(/^refs\/(tags|heads)\//, '');
}

/** Where a file's problems are reported (its versions and uses), and how a message names it (its first use, and how many more). */
function usesOf(use: FileUse): { where: { versions: string[]; files: string[] }; label: string } {
  const files = use.uses.map((u) => `${u.version}:${u.path}`);
  return { where: { versions: unique(use.uses.map((u) => u.version)), files }, label: files[0] + (files.length > 1 ? ` (+${files.length - 1} more)` : '') };
}

function unique<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0];
}
