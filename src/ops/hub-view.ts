/**
 * A store seen as a Hugging Face Hub model repository, read only (docs/hf.md): any revision
 * mstore resolves (v003, production, latest, a commit id) is a Hub revision whose sha is the
 * version's commit, and its files are the version's model files, listed as the Hub lists a
 * git-lfs repository (the pointer blob's id and size, and the lfs sha256). Bytes come from the
 * store, each chunk re-hashed to its id before it leaves, the whole file's sha256 checked when
 * the whole file is read; files kept in git come from their blob, re-hashed to its id.
 */
import { openReader } from './recipe.js';
import { MstoreError } from '../lib/errors.js';
import type { Store } from '../repo/store.js';
import { resolveRev } from '../repo/versions.js';
import { listVersionFiles } from '../repo/version-files.js';

export interface HubFile {
  path: string;
  /** The file's bytes. */
  size: number;
  /** Its git blob id: the file itself, or for large files the git-lfs pointer. */
  blob: string;
  lfs?: { oid: string; size: number; pointerSize: number };
}

export interface HubRevision {
  /** The version's commit: the Hub's `sha`. */
  commit: string;
  /** The commit's committer time, ISO 8601. */
  date: string;
  files: HubFile[];
  /** Every folder holding a file, with its git tree id (the Hub lists folders by their tree). */
  folders: { path: string; tree: string }[];
}

/** What huggingface_hub and transformers ask for when no revision is given. */
const HUB_DEFAULT_BRANCH = 'main';

export class HubView {
  constructor(private readonly store: Store) {}

  /**
   * The revision's files; EUNKNOWNREV when mstore cannot resolve `rev` to a version. The Hub's
   * default branch, `main`, is the default line's head (`latest`) unless a ref is named main.
   */
  async revision(rev: string): Promise<HubRevision> {
    const repo = this.store.repo;
    const commit = await resolveRev(repo, rev).catch((e: unknown) => {
      if (rev === HUB_DEFAULT_BRANCH && e instanceof MstoreError && e.code === 'EUNKNOWNREV') return resolveRev(repo, 'latest');
      throw e;
    });
    const c = await repo.readCommit(commit);
    const files: HubFile[] = [];
    for (const f of await listVersionFiles(repo, commit)) {
      if (f.kind === 'lfs') {
        const pointer = await repo.readBlob(f.blob, f.path);
        files.push({ path: f.path, size: f.size, blob: f.blob, lfs: { oid: f.oid, size: f.size, pointerSize: pointer.length } });
      } else files.push({ path: f.path, size: f.size, blob: f.blob });
    }
    return { commit, date: new Date(c.committer.timestamp * 1000).toISOString(), files, folders: await this.folders(c.tree, files) };
  }

  /** The folders the files lie in, each found by walking the trees from the root. */
  private async folders(root: string, files: HubFile[]): Promise<{ path: string; tree: string }[]> {
    const wanted = new Set<string>();
    for (const f of files) for (let i = f.path.indexOf('/'); i > 0; i = f.path.indexOf('/', i + 1)) wanted.add(f.path.slice(0, i));
    const out: { path: string; tree: string }[] = [];
    const walk = async (tree: string, dir: string): Promise<void> => {
      for (const e of await this.store.repo.readTreeEntries(tree)) {
        const p = dir ? `${dir}/${e.name}` : e.name;
        if (e.type !== 'tree' || !wanted.has(p)) continue;
        out.push({ path: p, tree: e.oid });
        await walk(e.oid, p);
      }
    };
    await walk(root, '');
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  /** Bytes [start, end) of a file of a revision, verified on their way out (see the module comment). */
  async *read(file: HubFile, start: number, end: number): AsyncGenerator<Buffer> {
    if (!file.lfs) {
      const data = Buffer.from(await this.store.repo.readBlob(file.blob, file.path));
      if (data.length !== file.size) throw new MstoreError('ECORRUPT', `${file.path}: blob ${file.blob} holds ${data.length} bytes, expected ${file.size}`);
      yield data.subarray(start, end);
      return;
    }
    const reader = openReader(this.store);
    try {
      // The answer's Content-Length comes from the pointer: a manifest that holds fewer bytes must
      // fail (the connection is then cut), never end the body short as if it were whole.
      let sent = 0;
      for await (const s of reader.slices(file.lfs.oid, start, end, file.path)) {
        sent += s.length;
        yield s;
      }
      if (sent !== end - start) throw new MstoreError('ECORRUPT', `${file.path}: the store's manifest of ${file.lfs.oid} holds fewer bytes than its pointer's ${file.size}`);
    } finally {
      await reader.close();
    }
  }
}
