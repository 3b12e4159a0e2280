/**
 * `fsck`: the whole store, not version by version (restic's checker, git fsck). Pack files
 * against their own tables and against the index, every index row against the packs,
 * every git object re-hashed and parsed (each once), git packs against their checksums, every
 * ref leading to a commit, what no ref reaches counted, and the derived caches (record cache,
 * ref table) against git. `repairIndex` rebuilds the index from the packs first (restic
 * rebuild-index), and the caches from git: derived data, the packs and git are the truth; it
 * never opens the old index, whatever state it is in (store.ts sets it aside as index.old/). The check runs under
 * the shared lock (gc waits) and walks every index page before lmdb reads one: a damaged
 * index is a problem named with its repair, not a crash.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { MstoreError, errorLine } from '../../lib/errors.js';
import { GITLINK_MODE, type Link } from '../../format/git-links.js';
import { gitObjects } from '../../repo/git-objects.js';
import { rebuildRecords, staleRecords } from '../../repo/versions.js';
import { localRefs } from '../../repo/refs.js';
import type { Store } from '../../repo/store.js';
import { ENTRY_CHUNK, ENTRY_FILE, ENTRY_RECIPE, readPackEntry, readPackTable, type PackEntry } from '../../repo/pack.js';
import { parseRecipe, recipeInputs } from '../../format/recipe.js';
import { indexPacks, listPackFiles } from '../../repo/reindex.js';
import { contentOf, refRoots } from '../../repo/reach.js';
import { indexPageProblems } from '../../repo/index-check.js';
import { indexDamaged } from '../../repo/index-db.js';

/** Missing contents listed one by one; beyond this, counted. */
const MAX_LISTED = 20;

export interface FsckResult {
  ok: boolean;
  problems: string[];
  /** Findings that lose nothing (duplicates, unreachable data). */
  notes: string[];
  repaired?: { packsIndexed: number; damagedPacks: string[] };
  packs: { total: number; bytes: number; damaged: number; unindexed: number; missing: number };
  index: { chunks: number; files: number; recipes: number };
  git: { objects: number; damaged: number; unreachable: number };
  refs: { total: number; broken: number };
  unreachable: { chunks: number; bytes: number; files: number };
}

export async function fsck(store: Store, opts: { repairIndex?: boolean } = {}): Promise<FsckResult> {
  let repaired: FsckResult['repaired'];
  if (opts.repairIndex) {
    repaired = await store.withExclusiveLock('fsck', async () => {
      await store.dropIndex();
      const r = await indexPacks(store);
      // The other derived data, made again from git: the record cache and the ref table.
      const refs = [...(await localRefs(store)).entries()].filter(([ref]) => !ref.startsWith('refs/notes/'));
      await rebuildRecords(store.repo, refs.map(([, v]) => v));
      await store.repo.refTable.refresh(undefined, (oid) => store.repo.peelTag(oid));
      return { packsIndexed: r.indexed.length, damagedPacks: r.damaged.map((d) => d.pack) };
    });
  }
  return store.withReadLock('fsck', async () => {
    try {
      const damage = indexPageProblems(store.indexDir, 5);
      if (damage.length) throw indexDamaged(store.indexDir, damage.join('; '));
      return await check(store, repaired);
    } catch (e) {
      // An index lmdb cannot use: report it (the rest of the check reads through it).
      if (!(e instanceof MstoreError) || e.code !== 'ECORRUPT' || !e.what?.startsWith(store.indexDir)) throw e;
      return {
        ok: false,
        problems: [e.message],
        notes: [],
        ...(repaired ? { repaired } : {}),
        packs: { total: (await listPackFiles(store.packsDir)).length, bytes: 0, damaged: 0, unindexed: 0, missing: 0 },
        index: { chunks: 0, files: 0, recipes: 0 },
        git: { objects: 0, damaged: 0, unreachable: 0 },
        refs: { total: 0, broken: 0 },
        unreachable: { chunks: 0, bytes: 0, files: 0 },
      };
    }
  });
}

async function check(store: Store, repaired: FsckResult['repaired']): Promise<FsckResult> {
  const problems: string[] = [];
  const notes: string[] = [];
  const index = store.index;

  // Packs on disk, their tables, and the index's view of them.
  const onDisk = await listPackFiles(store.packsDir);
  const indexed = new Set(index.packIds());
  const tables = new Map<string, Map<number, PackEntry>>();
  let packBytes = 0;
  let damaged = 0;
  let unindexed = 0;
  /** File oid -> the unindexed pack that holds its manifest. */
  const onlyUnindexed = new Map<string, string>();
  for (const id of onDisk) {
    try {
      const entries = await readPackTable(store.packsDir, id);
      tables.set(id, new Map(entries.map((e) => [e.offset, e])));
      const last = entries[entries.length - 1];
      packBytes += last ? last.offset + last.length : 0;
    } catch (e) {
      damaged++;
      problems.push(`pack ${id}: ${(e as Error).message.replace(`pack ${id}: `, '')}`);
    }
    if (!indexed.has(id)) {
      const t = tables.get(id);
      // An interrupted gc leaves its old pack behind once every live entry has a new home.
      const redundant = t && [...t.values()].every((e) => (e.type === ENTRY_CHUNK ? index.hasChunk(e.id) : index.hasContent(e.id)));
      if (redundant) notes.push(`pack ${id} is not in the index but holds nothing the index lacks (left by an interrupted gc or commit; the next writer indexes it, gc then drops it)`);
      else if (t) {
        // Sealed by a writer that did not finish (docs/format.md §9.2): harmless unless a version
        // needs what it holds, which the content check below reports with the repair.
        unindexed++;
        for (const e of t.values()) if (e.type === ENTRY_FILE || e.type === ENTRY_RECIPE) onlyUnindexed.set(e.id.toString('hex'), id);
        notes.push(`pack ${id} is not in the index (sealed by a writer that did not finish; the next writer indexes it, or 'mstore fsck --repair-index')`);
      }
    }
  }
  const present = new Set(onDisk);
  let missing = 0;
  for (const id of indexed) {
    if (!present.has(id)) {
      missing++;
      problems.push(`pack ${id} is in the index but missing on disk`);
    }
  }

  // Every index row against the pack tables.
  let chunkRows = 0;
  const badChunk = new Set<string>();
  for (const [id, loc] of index.chunkRows()) {
    chunkRows++;
    const t = tables.get(loc.pack);
    if (!t) {
      if (present.has(loc.pack)) continue; // damaged table: reported above
      badChunk.add(id.toString('hex'));
      if (indexed.has(loc.pack) && !present.has(loc.pack)) continue; // reported as a missing pack
      problems.push(`index: chunk ${id.toString('hex')} points at pack ${loc.pack}, which is not indexed`);
      continue;
    }
    const e = t.get(loc.offset);
    if (!e || e.type !== ENTRY_CHUNK || !e.id.equals(id) || e.length !== loc.length) {
      badChunk.add(id.toString('hex'));
      problems.push(`index: chunk ${id.toString('hex')} is not at pack ${loc.pack} offset ${loc.offset}`);
    }
  }
  let fileRows = 0;
  for (const [oid, f] of index.fileRows()) {
    fileRows++;
    const absent = f.chunks.filter((c) => !index.hasChunk(c.id)).length;
    if (absent) problems.push(`index: file ${oid.toString('hex')} lists ${absent} chunk(s) the index does not have`);
  }
  const recipes = await recipeProblems(store, tables, indexed, problems);
  // Pack entries the index does not know (only for indexed packs; unindexed ones are reported whole).
  let dupes = 0;
  let orphans = 0;
  for (const [pack, t] of tables) {
    if (!indexed.has(pack)) continue;
    let lost = 0;
    for (const e of t.values()) {
      if (e.type === ENTRY_CHUNK) {
        const loc = index.chunk(e.id);
        if (!loc) lost++;
        else if (loc.pack !== pack || loc.offset !== e.offset) dupes++;
      } else if (e.type === ENTRY_FILE && !index.hasFile(e.id)) lost++;
      // A recipe whose content has bytes now (materialize) is superseded, not lost; one whose
      // inputs are gone (its writer died, gc freed them) cannot be recorded: gc drops both.
      else if (e.type === ENTRY_RECIPE && !index.hasContent(e.id)) {
        if (await recipeReadable(store, pack, e)) lost++;
        else orphans++;
      }
    }
    if (lost) problems.push(`pack ${pack}: ${lost} entr${lost === 1 ? 'y is' : 'ies are'} not in the index (run 'mstore fsck --repair-index')`);
  }
  if (dupes) notes.push(`${dupes} chunk copies are duplicates of chunks stored elsewhere (gc drops them)`);
  if (orphans) notes.push(`${orphans} recipe entries read files the store no longer holds, and are not in the index (left by a writer that did not finish; gc drops them)`);

  // Git objects: every one read once (re-hashed, git-objects.ts) and parsed; first those refs
  // reach, walking their links, then the rest. Git packs against their own checksums.
  store.repo.forgetReads();
  const objects = listGitObjects(store.gitdir);
  const listed = new Set(objects);
  const damage = { count: 0 };
  problems.push(...gitPackProblems(store.gitdir));
  const { roots, problems: refProblems } = await refRoots(store.repo);
  for (const p of refProblems) problems.push(`ref ${p.message}`);
  const starts: string[] = [];
  for (const ref of await store.repo.listRefs('refs')) {
    const v = await store.repo.readRef(`refs/${ref}`);
    if (v) starts.push(v);
  }
  const reached = await reachableGitObjects(store, starts, listed, problems, damage);
  let unreachableGit = 0;
  for (const oid of objects) {
    if (reached.has(oid)) continue;
    unreachableGit++;
    await checkGitObject(store, oid, problems, damage);
  }
  const gitDamaged = damage.count;
  problems.push(...(await cacheProblems(store)));

  let content = new Map<string, { uses: string[] }>();
  try {
    content = await contentOf(store.repo, roots.keys(), (c) => c.slice(0, 12));
  } catch (e) {
    problems.push(`cannot list the content of every version: ${(e as Error).message.split('\n')[0]}`);
  }
  const live = new Set(content.keys());
  const liveChunks = new Set<string>();
  let absent = 0;
  for (const [oid, use] of content) {
    const f = index.file(Buffer.from(oid, 'hex'));
    const recipe = f ? undefined : recipes.get(oid);
    if (recipe) {
      // Content kept as its recipe lives through the files it reads (checked above).
      for (const input of recipe) {
        live.add(input);
        for (const c of index.file(Buffer.from(input, 'hex'))?.chunks ?? []) liveChunks.add(c.id.toString('hex'));
      }
      continue;
    }
    if (!f) {
      // Content a version needs that no pack holds (a lost pack): verify names every version.
      const where = onlyUnindexed.get(oid);
      const what = `content ${oid} (${use.uses[0]}${use.uses.length > 1 ? ` and ${use.uses.length - 1} more` : ''})`;
      if (++absent <= MAX_LISTED) problems.push(where ? `${what} is only in pack ${where}, which is not in the index (run 'mstore fsck --repair-index')` : `${what} is in no pack the index knows`);
      continue;
    }
    for (const c of f.chunks) liveChunks.add(c.id.toString('hex'));
  }
  if (absent > MAX_LISTED) problems.push(`${absent - MAX_LISTED} more files versions use are in no pack the index knows ('mstore verify --all' names the versions)`);
  let unreachChunks = 0;
  let unreachBytes = 0;
  for (const [id, loc] of index.chunkRows()) {
    if (!liveChunks.has(id.toString('hex'))) {
      unreachChunks++;
      unreachBytes += loc.length;
    }
  }
  let unreachFiles = 0;
  for (const [oid] of index.fileRows()) if (!live.has(oid.toString('hex'))) unreachFiles++;
  for (const oid of recipes.keys()) if (!live.has(oid)) unreachFiles++;
  if (unreachChunks) notes.push(`${unreachChunks} chunks (${unreachBytes} bytes) and ${unreachFiles} files no ref reaches (removed versions kept for restore, or garbage gc frees after the grace period)`);
  if (unreachableGit) notes.push(`${unreachableGit} git objects no ref reaches`);

  return {
    ok: problems.length === 0,
    problems,
    notes,
    ...(repaired ? { repaired } : {}),
    packs: { total: onDisk.length, bytes: packBytes, damaged, unindexed, missing },
    index: { chunks: chunkRows, files: fileRows, recipes: recipes.size },
    git: { objects: objects.length, damaged: gitDamaged, unreachable: unreachableGit },
    refs: { total: [...roots.values()].reduce((a, n) => a + n.length, 0) + refProblems.length, broken: refProblems.length },
    unreachable: { chunks: unreachChunks, bytes: unreachBytes, files: unreachFiles },
  };
}

/** Loose objects plus those listed in pack indexes, sorted. */
export function listGitObjects(gitdir: string): string[] {
  const objects = gitObjects(gitdir);
  const out = new Set(objects.looseIds());
  for (const p of objects.packedIds()) for (const id of p.ids) out.add(id);
  return [...out].sort();
}

/** Reads one object (re-hashed, parsed, its entry names checked); what is wrong goes to `problems`. */
async function checkGitObject(store: Store, oid: string, problems: string[], damage: { count: number }): Promise<Link[] | undefined> {
  try {
    const { badName, links } = await store.repo.readLinks(oid);
    if (badName) problems.push(`git object ${oid}: ${badName}`);
    return links;
  } catch (e) {
    damage.count++;
    problems.push(e instanceof MstoreError ? e.message : `git object ${oid}: ${errorLine(e)}`);
    return undefined;
  }
}

/** Every git object reachable from the given objects (tags, commits and their parents, trees, blobs), each read once. */
async function reachableGitObjects(store: Store, commits: string[], listed: Set<string>, problems: string[], damage: { count: number }): Promise<Set<string>> {
  const seen = new Set<string>();
  const todo = [...commits];
  while (todo.length) {
    const oid = todo.pop()!;
    if (seen.has(oid)) continue;
    seen.add(oid);
    if (!listed.has(oid) && !store.repo.objects.has(oid)) {
      problems.push(`git object ${oid} is missing (reachable from a ref)`);
      continue;
    }
    const links = await checkGitObject(store, oid, problems, damage);
    for (const l of links ?? []) if (l.mode !== GITLINK_MODE) todo.push(l.oid);
  }
  return seen;
}

/**
 * Each git pack against its own checksums, as `git verify-pack` checks them: the pack's
 * trailer is the sha1 of its bytes, the index names that trailer and ends with its own sha1;
 * an index that cannot be read is named.
 */
function gitPackProblems(gitdir: string): string[] {
  const out: string[] = [];
  const dir = path.join(gitdir, 'objects', 'pack');
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => /^pack-[0-9a-f]{40}\.idx$/.test(n));
  } catch {
    return out;
  }
  for (const [name, why] of gitObjects(gitdir).unreadable) out.push(`git pack index ${name} cannot be used: ${why}`);
  for (const n of names) {
    const base = n.slice(0, -'.idx'.length);
    try {
      const idx = readFileSync(path.join(dir, n));
      const pack = readFileSync(path.join(dir, `${base}.pack`));
      if (pack.length < 32 || !createHash('sha1').update(pack.subarray(0, pack.length - 20)).digest().equals(pack.subarray(pack.length - 20))) {
        out.push(`git pack ${base}.pack is damaged: its bytes do not hash to its trailer`);
      } else if (idx.length < 40 || !createHash('sha1').update(idx.subarray(0, idx.length - 20)).digest().equals(idx.subarray(idx.length - 20))) {
        out.push(`git pack index ${n} is damaged: its bytes do not hash to its trailer`);
      } else if (!idx.subarray(idx.length - 40, idx.length - 20).equals(pack.subarray(pack.length - 20))) {
        out.push(`git pack index ${n} belongs to another pack (its pack checksum differs)`);
      }
    } catch (e) {
      out.push(`git pack ${base}: ${errorLine(e)}`);
    }
  }
  return out;
}

/**
 * The derived caches against git (docs/format.md §2.6): every record the record cache holds for
 * an object that is here must be what the object says, and a ref-table snapshot that validates
 * must list the refs as their files do. Either is rebuilt by `fsck --repair-index`.
 */
async function cacheProblems(store: Store): Promise<string[]> {
  const out: string[] = [];
  const repo = store.repo;
  const wrong = await staleRecords(repo);
  if (wrong.length) out.push(`the record cache (cache/records) disagrees with git for ${wrong.length} object(s), e.g. ${wrong[0]}; run 'mstore fsck --repair-index'`);
  if (!repo.refTable.matchesFiles()) out.push(`the ref table (cache/refs) disagrees with the ref files; run 'mstore fsck --repair-index'`);
  return out;
}

/**
 * Every recipe row against the pack entry it came from (the same bytes), parsed, and reading
 * only files the store holds in chunks (the rule gc keeps); a recipe row beside a manifest is a
 * problem too (one form per content id). Returns the inputs of each recipe row, by oid.
 */
async function recipeProblems(store: Store, tables: Map<string, Map<number, PackEntry>>, indexed: Set<string>, problems: string[]): Promise<Map<string, string[]>> {
  const index = store.index;
  const inPacks = new Map<string, { pack: string; entry: PackEntry }[]>();
  for (const [pack, t] of tables) {
    if (!indexed.has(pack)) continue;
    for (const e of t.values()) if (e.type === ENTRY_RECIPE) inPacks.set(e.id.toString('hex'), [...(inPacks.get(e.id.toString('hex')) ?? []), { pack, entry: e }]);
  }
  const out = new Map<string, string[]>();
  for (const [oid, record] of index.recipeRows()) {
    const key = oid.toString('hex');
    const where = `recipe ${key}`;
    const copies = inPacks.get(key) ?? [];
    if (!copies.length) {
      problems.push(`index: ${where} is in no indexed pack`);
      continue;
    }
    // The row must be the bytes of one of its pack entries (two writers may have stored it twice).
    let same = false;
    for (const at of copies) same ||= (await readPackEntry(store.packsDir, at.pack, at.entry)).equals(record);
    if (!same) {
      problems.push(`${where} in pack ${copies.map((c) => c.pack).join(', ')} differs from its index row (run 'mstore fsck --repair-index' if the pack's record is sound)`);
    }
    let inputs: string[];
    try {
      inputs = recipeInputs(parseRecipe(record, `${where} in the index`)).map((i) => i.oid);
    } catch (e) {
      problems.push((e as Error).message);
      continue;
    }
    out.set(key, inputs);
    if (index.hasFile(oid)) problems.push(`index: content ${key} has both a manifest and a recipe`);
    for (const input of inputs) if (!index.hasFile(Buffer.from(input, 'hex'))) problems.push(`${where} reads ${input}, which the store does not hold in chunks`);
  }
  return out;
}

/** Whether a recipe entry in `pack` parses and reads only files the store holds in chunks (so the index should have it). */
async function recipeReadable(store: Store, pack: string, e: PackEntry): Promise<boolean> {
  try {
    const record = await readPackEntry(store.packsDir, pack, e);
    return recipeInputs(parseRecipe(record, `recipe ${e.id.toString('hex')}`)).every((i) => store.index.hasFile(Buffer.from(i.oid, 'hex')));
  } catch {
    return true; // a damaged record: reported as an entry the index lacks
  }
}
