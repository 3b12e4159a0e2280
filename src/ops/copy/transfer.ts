/**
 * Copying versions from one store to another (backups; remotes build on the same steps).
 * Order, as in commit: chunk data and manifests fsynced into packs and indexed, then the
 * git objects (dependencies first), then a full verify in the target, then the refs. Only
 * what the target lacks is copied, and every chunk is re-hashed as it is read.
 */
import { takeRecipes } from '../recipe-intake.js';
import { parseRecipe, recipeInputs } from '../../format/recipe.js';
import { open, type FileHandle } from 'node:fs/promises';
import { MstoreError } from '../../lib/errors.js';
import type { Store } from '../../repo/store.js';
import { sha256 } from '../../lib/hashing.js';
import { packPath } from '../../repo/pack.js';
import { encodeManifest } from '../../repo/index-db.js';
import { contentOf, type Roots } from '../../repo/reach.js';
import { reachableObjects, hasObject, descendsFrom } from '../../repo/git-walk.js';
import { gitObjects } from '../../repo/git-objects.js';
import { moveRefs, type RefMove, type RefReason, type RefLogEntry } from '../../repo/reflog.js';
import { verify, type VerifyResult } from '../integrity/verify.js';

export interface CopyOptions {
  /** The versions to copy: commit id -> names (for messages and the verify report). */
  versions: Roots;
  /** Refs to set in the target once everything is verified there (full ref name -> value). */
  refs: Map<string, string>;
  reason: RefReason;
  message?: string;
  onProgress?: (p: { done: number; total: number }) => void;
}

export interface CopyResult {
  gitObjects: number;
  files: number;
  chunks: number;
  bytes: number;
  verified: VerifyResult;
  refs: RefLogEntry[];
  /** Line refs left where they were because the target's line has moved elsewhere. */
  keptRefs: string[];
}

/** Copies versions from `src` into `dst` under dst's lock; throws, setting no ref, if the copy does not verify. */
export async function copyVersions(src: Store, dst: Store, opts: CopyOptions): Promise<CopyResult> {
  if (src.dir === dst.dir) throw new MstoreError('EUSAGE', `cannot copy a store into itself (${src.dir})`);
  return dst.withLock('copy', async () => {
    // Refs first, on paper: a conflicting tag means this is another store's history.
    const moves: RefMove[] = [];
    const keptRefs: string[] = [];
    for (const [ref, value] of opts.refs) {
      const cur = await dst.repo.readRef(ref);
      if (cur === value) continue;
      if (!cur) moves.push({ ref, value });
      else if (ref.startsWith('refs/heads/') || ref.startsWith('refs/notes/')) {
        // Line heads and labels (notes) only fast-forward: a target that moved on keeps its own.
        const ahead = await hasObject(dst.gitdir, cur).then((has) =>
          has ? descendsFrom(src.gitdir, value, cur) : false,
        );
        if (ahead) moves.push({ ref, value });
        else keptRefs.push(ref);
      } else {
        throw new MstoreError('ECONFLICT', `${dst.dir} already has ${ref} pointing elsewhere (${cur.slice(0, 12)}, not ${value.slice(0, 12)}): it holds another store's versions`);
      }
    }

    // 1. Content the target lacks.
    const content = await contentOf(src.repo, opts.versions.keys(), (c) => opts.versions.get(c)?.[0] ?? c.slice(0, 12));
    const files: { oid: Buffer; size: number; chunks: { id: Buffer; length: number }[] }[] = [];
    // Content kept as a recipe is copied as its recipe, with the files it reads (docs/format.md §18).
    const recipes: { oid: string; record: Buffer; display: string }[] = [];
    const queued = new Set<string>();
    let total = 0;
    const addFile = (oid: Buffer, display: string): void => {
      const f = src.index.file(oid);
      if (!f) throw new MstoreError('EMISSING', `${display}: content ${oid.toString('hex')} is missing from ${src.dir}`);
      files.push({ oid, size: f.size, chunks: f.chunks });
      total += f.size;
    };
    for (const use of content.values()) {
      const oid = Buffer.from(use.oid, 'hex');
      if (dst.index.hasContent(oid) || queued.has(use.oid)) continue;
      queued.add(use.oid);
      const record = src.index.heldAsRecipe(oid);
      if (!record) {
        addFile(oid, use.uses[0]);
        continue;
      }
      recipes.push({ oid: use.oid, record, display: use.uses[0] });
      for (const i of recipeInputs(parseRecipe(record, `${use.uses[0]} (its recipe)`))) {
        // One the target holds as a recipe is rebuilt there (inputsInChunks), not copied.
        if (queued.has(i.oid) || dst.index.hasContent(Buffer.from(i.oid, 'hex'))) continue;
        queued.add(i.oid);
        addFile(Buffer.from(i.oid, 'hex'), `${use.uses[0]} (its recipe's input ${i.name})`);
      }
    }
    const sink = dst.sink();
    const handles = new Map<string, FileHandle>();
    let done = 0;
    try {
      for (const f of files) {
        for (const c of f.chunks) {
          done += c.length;
          if (sink.hasChunk(c.id)) continue;
          const key = c.id.toString('hex');
          const loc = src.index.chunk(c.id);
          if (!loc) throw new MstoreError('EMISSING', `chunk ${key} is missing from ${src.dir}`);
          let fh = handles.get(loc.pack);
          if (!fh) handles.set(loc.pack, (fh = await open(packPath(src.packsDir, loc.pack), 'r')));
          const data = Buffer.allocUnsafe(loc.length);
          const { bytesRead } = await fh.read(data, 0, loc.length, loc.offset);
          if (bytesRead !== loc.length || !sha256(data).equals(c.id)) {
            throw new MstoreError('ECORRUPT', `chunk ${key} in pack ${loc.pack} of ${src.dir} is damaged (hash mismatch); nothing copied`);
          }
          await sink.addChunk(c.id, data);
          opts.onProgress?.({ done, total });
        }
        await sink.addFile(f.oid, f.size, encodeManifest(f.chunks));
      }
      await sink.publish();
      // Each recipe proven in the target (rebuilt from what it now holds) before it is recorded there.
      await takeRecipes(dst, sink, recipes);
      await sink.publish();
    } catch (e) {
      await sink.abandon(false);
      throw e;
    } finally {
      for (const fh of handles.values()) await fh.close();
    }

    // 2. Git objects: the versions' whole history (git fsck needs every parent), tags included.
    const starts = [...new Set([...opts.versions.keys(), ...opts.refs.values()])];
    let gitCopied = 0;
    const wanted = gitObjects(dst.gitdir).absent((await reachableObjects(src.gitdir, starts)).map((o) => o.oid));
    for (const oid of wanted) {
      const { type, content } = await gitObjects(src.gitdir).get(oid);
      await sink.addGitObject(type, content, oid);
      gitCopied++;
    }
    await sink.flushGit();

    // 3. Every byte re-read in the target, before any ref there points at it.
    const verified = await verify(dst, { commits: opts.versions, wholeOnReceipt: new Set(recipes.map((r) => r.oid)) });
    if (!verified.ok) {
      throw new MstoreError('ECORRUPT', `the copy in ${dst.dir} failed verification (${verified.problems[0].message}${verified.problems.length > 1 ? `; ${verified.problems.length - 1} more` : ''}); no ref was set there`);
    }

    // 4. Refs.
    const refs = await moveRefs(dst, moves, opts.reason, { message: opts.message });
    return { gitObjects: gitCopied, files: sink.newFiles, chunks: sink.newChunks, bytes: sink.newBytes, verified, refs, keptRefs };
  });
}
