/**
 * Importing a bundle (docs/format.md §16): pass 1 checks the whole archive without writing,
 * pass 2 re-reads and re-checks every entry into the store (import.ts says the rules).
 */
import path from 'node:path';
import { MstoreError } from '../../lib/errors.js';
import type { Store } from '../../repo/store.js';
import { sha256 } from '../../lib/hashing.js';
import { decodeManifest } from '../../repo/index-db.js';
import { parsePointer, type Pointer } from '../../format/pointer.js';
import { moveRefs, type RefMove } from '../../repo/reflog.js';
import { refCollision } from '../../repo/versions.js';
import { verify } from '../integrity/verify.js';
import { takeRecipes } from '../recipe-intake.js';
import { RECIPE_RECORD_MAX, parseRecipe, recipeInputs, type Recipe } from '../../format/recipe.js';
import {
  BUNDLE_HEADER, CHUNK_ENTRY, FILE_ENTRY, GIT_ENTRY, RECIPE_ENTRY, MAX_BUNDLE_HEADER_BYTES, MAX_GIT_OBJECT_BYTES, MAX_MANIFEST_BYTES,
  bundleObjectLinks as objectLinks, parseBundleHeader, type BundleHeader,
} from '../../format/bundle.js'; // objectLinks here: what a bundle may hold (§16.5.2)
import { isGitType, sha1Hex, unwrapObject, type GitType, type Link } from '../../format/git-links.js';
import { MAX_CHUNK_BYTES, manifestSize } from './bundle-store.js';
import { readBody, readTar, skipBody } from './tar-reader.js';
import type { ImportOptions, ImportResult, ImportedRef } from './import-result.js';

// ---------------------------------------------------------------------------------------
// bundle: pass 1

interface PlannedEntry {
  name: string;
  size: number;
}

interface BundlePlan {
  header: BundleHeader;
  entries: PlannedEntry[];
  /** Objects in the bundle: type and links. */
  objects: Map<string, { type: GitType; links: Link[] }>;
  /** File oid -> manifest bytes, size. */
  manifests: Map<string, { manifest: Buffer; size: number }>;
  /** File oid -> recipe record, for content the bundle carries as its recipe (docs/format.md §18). */
  recipes: Map<string, Buffer>;
  /** Chunk id -> length, for chunks in the bundle. */
  chunks: Map<string, number>;
}

const SECTIONS = ['header', 'git', 'recipes', 'files', 'chunks'] as const;
/** Section numbers, in the order entries come (SECTIONS); chunks are the last. */
const GIT = 1;
const RECIPES = 2;
const FILES = 3;

function sectionOf(name: string): { section: number; id: string } | undefined {
  for (const [section, re] of [GIT_ENTRY, RECIPE_ENTRY, FILE_ENTRY, CHUNK_ENTRY].entries()) {
    const m = re.exec(name);
    if (m) return { section: section + 1, id: m[1] };
  }
  return undefined;
}

/** Reads git objects from the bundle plan first, then from the store; undefined when neither has it. */
class ObjectSource {
  private readonly storeTypes = new Map<string, { type: GitType; links: Link[] } | null>();
  constructor(
    private readonly store: Store,
    private readonly objects: BundlePlan['objects'],
  ) {}

  async get(oid: string): Promise<{ type: GitType; links: Link[]; inBundle: boolean } | undefined> {
    const b = this.objects.get(oid);
    if (b) return { ...b, inBundle: true };
    let s = this.storeTypes.get(oid);
    if (s === undefined) {
      try {
        const o = await this.store.repo.readRawObject(oid);
        if (!isGitType(o.type)) throw new Error(`unknown type ${o.type}`);
        const links = o.type === 'blob' ? [] : objectLinks(o.type, Buffer.from(o.content.buffer, o.content.byteOffset, o.content.byteLength));
        s = { type: o.type, links };
      } catch {
        s = null;
      }
      this.storeTypes.set(oid, s);
    }
    return s ? { ...s, inBundle: false } : undefined;
  }

  async blob(oid: string, bundlePointers: Map<string, Pointer>): Promise<Pointer | undefined> {
    if (this.objects.has(oid)) return bundlePointers.get(oid);
    return parsePointer(await this.store.repo.readBlob(oid));
  }
}

/** Is `ancestor` reachable from `commit` through parents? */
async function isAncestor(src: ObjectSource, ancestor: string, commit: string): Promise<boolean> {
  const seen = new Set<string>();
  const todo = [commit];
  while (todo.length) {
    const c = todo.pop()!;
    if (c === ancestor) return true;
    if (seen.has(c)) continue;
    seen.add(c);
    const o = await src.get(c);
    if (!o || o.type !== 'commit') continue;
    for (const l of o.links) if (l.via === 'parent') todo.push(l.oid);
  }
  return false;
}

/** Follows tags to the commit a ref names (within bundle and store). */
async function peel(src: ObjectSource, oid: string): Promise<string | undefined> {
  for (let i = 0; i < 16; i++) {
    const o = await src.get(oid);
    if (!o) return undefined;
    if (o.type === 'commit') return oid;
    if (o.type !== 'tag') return undefined;
    oid = o.links[0].oid;
  }
  return undefined;
}

/** What each of the bundle's refs would do to this store; refuses any move but a line fast-forward. */
async function planRefs(store: Store, src: ObjectSource, header: BundleHeader, display: string): Promise<ImportedRef[]> {
  const repo = store.repo;
  const out: ImportedRef[] = [];
  const names = Object.keys(header.refs).sort((a, b) => {
    const ka = a.startsWith('refs/tags/') ? 0 : 1;
    const kb = b.startsWith('refs/tags/') ? 0 : 1;
    return ka - kb || (a < b ? -1 : a > b ? 1 : 0);
  });
  for (const ref of names) {
    const value = header.refs[ref];
    const old = (await repo.readRef(ref)) ?? null;
    if (old === value) {
      out.push({ ref, old, new: value, action: 'unchanged' });
      continue;
    }
    if (old === null) {
      const clash = await refCollision(repo, ref);
      if (clash) throw new MstoreError('ECONFLICT', `${display}: ${ref} collides with the existing ref ${clash}; nothing imported`);
      out.push({ ref, old, new: value, action: 'created' });
      continue;
    }
    if (ref.startsWith('refs/heads/')) {
      const newCommit = await peel(src, value);
      let oldCommit: string | undefined;
      try {
        oldCommit = await repo.peelToCommit(old);
      } catch {
        oldCommit = undefined;
      }
      if (newCommit && oldCommit && oldCommit === old && (await isAncestor(src, oldCommit, newCommit))) {
        out.push({ ref, old, new: value, action: 'fast-forward' });
        continue;
      }
      throw new MstoreError(
        'ECONFLICT',
        `${display}: ${ref} is ${old.slice(0, 12)} here and ${value.slice(0, 12)} in the bundle, which does not descend from it; nothing imported`,
      );
    }
    throw new MstoreError('ECONFLICT', `${display}: ${ref} already exists here with a different value (${old.slice(0, 12)}, the bundle has ${value.slice(0, 12)}); nothing imported`);
  }
  return out;
}

async function scanBundle(store: Store, file: string, display: string): Promise<BundlePlan> {
  const index = store.index;
  const plan: BundlePlan = { header: undefined as unknown as BundleHeader, entries: [], objects: new Map(), manifests: new Map(), recipes: new Map(), chunks: new Map() };
  /** Files the bundle's recipes read: oid -> size and a use for messages. */
  const inputs = new Map<string, { size: number; use: string }>();
  const pointers = new Map<string, Pointer>();
  const src = new ObjectSource(store, plan.objects);
  /** Needed lfs content: oid -> size and a use for messages. */
  let needed: Map<string, { size: number; use: string }> | undefined;
  /** Chunks the bundle's manifests name: id -> length, and a file that uses it. */
  const chunkNeed = new Map<string, { length: number; use: string }>();
  let last: { section: number; id: string } | undefined;

  const bad = (name: string, why: string): MstoreError => new MstoreError('EBADINPUT', `${display}: entry '${name}': ${why}; nothing imported`);

  /** The lfs files of the bundle's versions (their trees, not their ancestors'). */
  const neededContent = async (): Promise<Map<string, { size: number; use: string }>> => {
    const out = new Map<string, { size: number; use: string }>();
    for (const v of plan.header.versions) {
      const c = await src.get(v.commit);
      if (!c || c.type !== 'commit') throw new MstoreError('EBADINPUT', `${display}: version ${v.name}: commit ${v.commit} is in neither the bundle nor this store; nothing imported`);
      const walk = async (tree: string, prefix: string): Promise<void> => {
        const t = await src.get(tree);
        if (!t || t.type !== 'tree') throw new MstoreError('EBADINPUT', `${display}: version ${v.name}: tree ${tree} is in neither the bundle nor this store; nothing imported`);
        for (const l of t.links) {
          if (!prefix && l.via === '.mstore') continue;
          if (l.type === 'tree') await walk(l.oid, `${prefix}${l.via}/`);
          else if (l.mode !== '120000') {
            const ptr = await src.blob(l.oid, pointers).catch(() => undefined);
            if (!ptr) continue;
            const cur = out.get(ptr.oid);
            if (cur && cur.size !== ptr.size) throw new MstoreError('EBADINPUT', `${display}: ${v.name}:${prefix}${l.via}: two pointers to ${ptr.oid} disagree on its size; nothing imported`);
            if (!cur) out.set(ptr.oid, { size: ptr.size, use: `${v.name}:${prefix}${l.via}` });
          }
        }
      };
      await walk(c.links[0].oid, '');
    }
    return out;
  };

  let first = true;
  for await (const e of readTar(file, display)) {
    const { name, type, size } = e.header;
    const n = size ?? 0;
    if (type !== 'file') throw bad(name, `a bundle holds only regular files, not a ${type ?? 'entry of unknown type'}`);
    if (first) {
      first = false;
      if (name !== BUNDLE_HEADER) throw bad(name, `a bundle starts with ${BUNDLE_HEADER}`);
      if (n > MAX_BUNDLE_HEADER_BYTES) throw bad(name, `larger than ${MAX_BUNDLE_HEADER_BYTES} bytes`);
      const h = parseBundleHeader(await readBody(e));
      if (typeof h === 'string') throw bad(name, h);
      plan.header = h;
      plan.entries.push({ name, size: n });
      last = { section: 0, id: '' };
      continue;
    }
    const s = sectionOf(name);
    if (!s) throw bad(name, 'not a bundle entry name (git/<40 hex>, recipes/<64 hex>, files/<64 hex>, chunks/<64 hex>)');
    if (last && (s.section < last.section || (s.section === last.section && s.id <= last.id))) {
      throw bad(name, `out of order (after '${last.section ? `${SECTIONS[last.section]}/${last.id}` : BUNDLE_HEADER}'): entries are sorted, each once`);
    }
    if (s.section > 1 && !needed) needed = await neededContent();
    last = s;
    plan.entries.push({ name, size: n });
    if (s.section === GIT) {
      if (n > MAX_GIT_OBJECT_BYTES) throw bad(name, `larger than ${MAX_GIT_OBJECT_BYTES} bytes`);
      const data = await readBody(e);
      if (sha1Hex(data) !== s.id) throw bad(name, `its bytes hash to ${sha1Hex(data)}, not to its name`);
      const o = unwrapObject(data);
      if (typeof o === 'string') throw bad(name, o);
      let links: Link[];
      try {
        links = objectLinks(o.type, o.content);
      } catch (err) {
        throw bad(name, (err as Error).message);
      }
      plan.objects.set(s.id, { type: o.type, links });
      if (o.type === 'blob') {
        const ptr = parsePointer(o.content, name);
        if (ptr) pointers.set(s.id, ptr);
      }
    } else if (s.section === RECIPES) {
      if (n > RECIPE_RECORD_MAX) throw bad(name, `larger than ${RECIPE_RECORD_MAX} bytes`);
      const use = needed!.get(s.id);
      if (!use) throw bad(name, 'not the content of any file of the bundled versions');
      const record = await readBody(e);
      let recipe: Recipe;
      try {
        recipe = parseRecipe(record, name);
      } catch (err) {
        throw bad(name, (err as Error).message.replace(`${name}: `, ''));
      }
      if (recipe.size !== use.size) throw bad(name, `it makes ${recipe.size} bytes, ${use.use} has ${use.size}`);
      for (const i of recipeInputs(recipe)) {
        const cur = inputs.get(i.oid) ?? needed!.get(i.oid);
        if (cur && cur.size !== i.size) throw bad(name, `its input ${i.name} (${i.oid}) is ${i.size} bytes here, ${cur.size} for ${cur.use}`);
        if (!inputs.has(i.oid)) inputs.set(i.oid, { size: i.size, use: `${use.use} (its recipe's input ${i.name})` });
      }
      plan.recipes.set(s.id, record);
    } else if (s.section === FILES) {
      if (n > MAX_MANIFEST_BYTES) throw bad(name, `larger than ${MAX_MANIFEST_BYTES} bytes`);
      const use = needed!.get(s.id) ?? inputs.get(s.id);
      if (!use) throw bad(name, 'not the content of any file of the bundled versions, nor a file one of its recipes reads');
      const manifest = await readBody(e);
      const total = manifestSize(manifest);
      if (typeof total === 'string') throw bad(name, total);
      if (total !== use.size) throw bad(name, `its chunks add up to ${total} bytes, ${use.use} has ${use.size}`);
      for (const c of decodeManifest(manifest)) {
        const id = c.id.toString('hex');
        const cur = chunkNeed.get(id);
        if (cur && cur.length !== c.length) throw bad(name, `chunk ${id} has length ${c.length} here and ${cur.length} in another manifest`);
        if (!cur) chunkNeed.set(id, { length: c.length, use: use.use });
      }
      plan.manifests.set(s.id, { manifest, size: total });
    } else {
      if (n === 0 || n > MAX_CHUNK_BYTES) throw bad(name, `a chunk of ${n} bytes (1 to ${MAX_CHUNK_BYTES})`);
      const want = chunkNeed.get(s.id);
      if (!want) throw bad(name, 'a chunk no bundled manifest names');
      if (want.length !== n) throw bad(name, `${n} bytes, its manifest says ${want.length}`);
      const data = await readBody(e);
      const got = sha256(data).toString('hex');
      if (got !== s.id) throw bad(name, `its bytes hash to ${got}, not to its name`);
      plan.chunks.set(s.id, n);
    }
  }
  if (first) throw new MstoreError('EBADINPUT', `${display}: empty archive`);
  if (!needed) needed = await neededContent();

  // Completeness: content, chunks, and every object the refs and versions reach.
  for (const [oid, use] of [...needed, ...inputs]) {
    if (!plan.manifests.has(oid) && !plan.recipes.has(oid) && !index.hasContent(Buffer.from(oid, 'hex'))) {
      throw new MstoreError('EBADINPUT', `${display}: the content of ${use.use} (${oid}) is in neither the bundle nor this store; nothing imported`);
    }
  }
  for (const [id, c] of chunkNeed) {
    if (!plan.chunks.has(id) && !index.hasChunk(Buffer.from(id, 'hex'))) {
      throw new MstoreError('EBADINPUT', `${display}: chunk ${id} of ${c.use} is in neither the bundle nor this store; nothing imported`);
    }
  }
  const reached = new Set<string>();
  const todo: { oid: string; type?: GitType; from: string }[] = [
    ...Object.entries(plan.header.refs).map(([ref, oid]) => ({ oid, from: ref })),
    ...plan.header.versions.map((v) => ({ oid: v.commit, type: 'commit' as GitType, from: `version ${v.name}` })),
  ];
  while (todo.length) {
    const { oid, type, from } = todo.pop()!;
    if (reached.has(oid)) continue;
    reached.add(oid);
    const o = await src.get(oid);
    if (!o) throw new MstoreError('EBADINPUT', `${display}: git object ${oid} (${from}) is in neither the bundle nor this store; nothing imported`);
    if (type && o.type !== type) throw new MstoreError('EBADINPUT', `${display}: git object ${oid} (${from}) is a ${o.type}, expected a ${type}; nothing imported`);
    if (!o.inBundle) continue; // this store's own history is complete
    for (const l of o.links) todo.push({ oid: l.oid, type: l.type, from: `${l.via} of ${oid.slice(0, 12)}` });
  }
  for (const oid of plan.objects.keys()) {
    if (!reached.has(oid)) throw bad(`git/${oid}`, 'not reachable from the bundle\'s refs and versions');
  }
  const versionCommits = new Set(plan.header.versions.map((v) => v.commit));
  const named = new Set<string>();
  for (const [ref, value] of Object.entries(plan.header.refs)) {
    const c = await peel(src, value);
    if (!c || !versionCommits.has(c)) throw new MstoreError('EBADINPUT', `${display}: ${ref} does not lead to one of the bundle's versions; nothing imported`);
    named.add(c);
  }
  for (const v of plan.header.versions) {
    if (!named.has(v.commit)) throw new MstoreError('EBADINPUT', `${display}: version ${v.name} is named by none of the bundle's refs; nothing imported`);
  }
  await planRefs(store, src, plan.header, display);
  return plan;
}

// ---------------------------------------------------------------------------------------
// bundle: pass 2

export async function importBundle(store: Store, file: string, display: string, size: number, opts: ImportOptions): Promise<ImportResult> {
  const plan = await scanBundle(store, file, display);
  return store.withLock('import', async () => {
    const src = new ObjectSource(store, plan.objects);
    const refs = await planRefs(store, src, plan.header, display);
    const changed = (why: string): MstoreError =>
      new MstoreError('EBADINPUT', `${display} changed after it was checked (${why}); no refs written, the data written so far is unreferenced`);
    const sink = store.sink();
    const proven = new Set<string>();
    let done = 0;
    try {
      let i = 0;
      for await (const e of readTar(file, display, (n) => {
        done += n;
        opts.onProgress?.({ done, total: size });
      })) {
        const want = plan.entries[i++];
        const { name } = e.header;
        const n = e.header.size ?? 0;
        if (!want || want.name !== name || want.size !== n || e.header.type !== 'file') throw changed(`entry ${i} is '${name}'`);
        if (i === 1) {
          await skipBody(e);
          continue;
        }
        const s = sectionOf(name)!;
        const data = await readBody(e);
        if (s.section === RECIPES) {
          if (!data.equals(plan.recipes.get(s.id)!)) throw changed(`${name} differs`);
        } else if (s.section === GIT) {
          if (sha1Hex(data) !== s.id) throw changed(`${name} no longer hashes to its name`);
          const o = unwrapObject(data);
          if (typeof o === 'string' || o.type !== plan.objects.get(s.id)?.type) throw changed(`${name} is not the object it was`);
          await sink.addGitObject(o.type, o.content, s.id);
        } else if (s.section === FILES) {
          const m = plan.manifests.get(s.id)!;
          if (!data.equals(m.manifest)) throw changed(`${name} differs`);
          sink.addFile(Buffer.from(s.id, 'hex'), m.size, data)?.catch(() => undefined);
        } else {
          const id = sha256(data);
          if (id.toString('hex') !== s.id) throw changed(`${name} no longer hashes to its name`);
          await sink.addChunk(id, data);
        }
      }
      if (i !== plan.entries.length) throw changed(`it has ${i} entries, not ${plan.entries.length}`);
      // Content first (sealed, fsynced, indexed), as a commit does.
      await sink.publish();
      // Then each recipe, proven here (rebuilt from what this store now holds) before it is recorded.
      for (const oid of await takeRecipes(store, sink, [...plan.recipes].map(([oid, record]) => ({ oid, record, display: `${display}: recipes/${oid}` })))) proven.add(oid);
      await sink.publish();
    } catch (e) {
      await sink.abandon(false);
      throw e;
    }

    // Every byte of every imported version, re-read from this store, before any ref is written.
    const commits = new Map(plan.header.versions.map((v) => [v.commit, [v.name]]));
    const check = await verify(store, { commits, mode: 'full', wholeOnReceipt: proven });
    if (!check.ok) {
      const more = check.problems.length > 1 ? ` (+${check.problems.length - 1} more)` : '';
      throw new MstoreError(
        'ECORRUPT',
        `${display}: the imported versions fail verification: ${check.problems[0].message}${more}; no refs written (the imported data is unreferenced and gc may remove it)`,
      );
    }
    const moves: RefMove[] = refs.filter((r) => r.action !== 'unchanged').map((r) => ({ ref: r.ref, value: r.new, create: r.action === 'created' }));
    await moveRefs(store, moves, 'import', { message: `import ${path.basename(file)}` });
    return {
      format: 'bundle' as const,
      file,
      versions: plan.header.versions.map((v) => ({ name: v.name, commit: v.commit })),
      refs,
      gitObjects: plan.objects.size,
      chunks: plan.chunks.size,
      newChunks: sink.newChunks,
      newBytes: sink.newBytes,
      verifiedBytes: check.bytes,
    };
  });
}
