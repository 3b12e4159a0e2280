/**
 * One side of a comparison: a stored version, or the workspace as it is now. `diff`,
 * the tensor diff and the curve readers see files only through this interface, so they
 * compare a version with a version or a version with the workspace the same way.
 */
import { openReader } from '../recipe.js';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Store } from '../../repo/store.js';
import { sha256 } from '../../lib/hashing.js';
import { readMeta, resolveRev, type VersionMeta } from '../../repo/versions.js';
import { listVersionFiles } from '../../repo/version-files.js';
import { identifyFile } from '../../repo/identify.js';
import { gitMode, scanWorkspace, statMatches } from '../../repo/workspace.js';
import { readSafetensorsHeader, chunkCuts } from '../../format/safetensors.js';
import { MstoreError } from '../../lib/errors.js';
import type { FileMode } from '../../repo/git.js';
import type { StatKind } from '../../repo/index-db.js';

export interface SideFile {
  path: string;
  mode: FileMode;
  /** git: a small text file kept as a git blob; lfs: content in chunks; link: a symlink. */
  kind: StatKind;
  size: number;
  /** sha256 of the content (of the link target for links). */
  oid: string;
}

/** A chunk of a file: its sha256 id and where it sits in the file. */
export interface SideChunk {
  id: string;
  offset: number;
  length: number;
}

export interface Side {
  /** `v003`, `merged/v002`, a short commit id, or `workspace`. */
  label: string;
  commit: string | undefined;
  /** The version's metadata record; undefined for the workspace. */
  meta: VersionMeta | undefined;
  files(): Promise<Map<string, SideFile>>;
  /** Paths of the regular files (no links), without hashing anything. */
  paths(): Promise<string[]>;
  /** Bytes [start, start + length) of a file (verified when stored). */
  read(file: string, start: number, length: number): Promise<Buffer>;
  /** The whole file (for small files: text, JSON, curves). */
  readAll(file: string): Promise<Buffer>;
  /**
   * The file's chunks as the store cuts them (safetensors: header, then pieces aligned to
   * each tensor start), without reading stored data; for a workspace file they are
   * computed by hashing it. Undefined for files that are not lfs content.
   */
  chunks(file: string): Promise<SideChunk[] | undefined>;
  close(): Promise<void>;
}

export async function versionSide(store: Store, rev: string): Promise<Side> {
  const repo = store.repo;
  const commit = await resolveRev(repo, rev);
  const meta = await readMeta(repo, commit);
  let cache: Map<string, SideFile> | undefined;
  const reader = openReader(store);
  const files = async (): Promise<Map<string, SideFile>> => {
    if (!cache) {
      cache = new Map();
      for (const f of await listVersionFiles(repo, commit)) cache.set(f.path, { path: f.path, mode: f.mode, kind: f.kind, size: f.size, oid: f.oid });
    }
    return cache;
  };
  const entry = async (file: string): Promise<SideFile> => {
    const f = (await files()).get(file);
    if (!f) throw new MstoreError('ENOTFOUND', `${meta?.version ?? rev} has no file ${file}`, { what: file, where: meta?.version ?? rev });
    return f;
  };
  const blobOf = async (file: string): Promise<Buffer> => {
    const b = await repo.readFileAt(commit, file);
    if (!b) throw new MstoreError('ENOTFOUND', `${meta?.version ?? rev} has no file ${file}`, { what: file, where: meta?.version ?? rev });
    return Buffer.from(b);
  };
  const side: Side = {
    label: meta?.version ?? commit.slice(0, 12),
    commit,
    meta,
    files,
    paths: async () => [...(await files()).values()].filter((f) => f.kind !== 'link').map((f) => f.path),
    async read(file, start, length) {
      const f = await entry(file);
      if (f.kind !== 'lfs') return (await blobOf(file)).subarray(start, start + length);
      return reader.readRange(f.oid, start, length, `${side.label}:${file}`);
    },
    async readAll(file) {
      const f = await entry(file);
      if (f.kind !== 'lfs') return blobOf(file);
      return reader.readRange(f.oid, 0, f.size, `${side.label}:${file}`);
    },
    async chunks(file) {
      const f = await entry(file);
      if (f.kind !== 'lfs') return undefined;
      const m = store.index.file(Buffer.from(f.oid, 'hex'));
      // Content kept as a recipe has no chunks: its tensors are compared by their rebuilt bytes.
      if (!m && store.index.hasRecipe(Buffer.from(f.oid, 'hex'))) return undefined;
      if (!m) throw new MstoreError('EMISSING', `${side.label}:${file}: content ${f.oid} is not in the store`);
      let offset = 0;
      return m.chunks.map((c) => {
        const out = { id: c.id.toString('hex'), offset, length: c.length };
        offset += c.length;
        return out;
      });
    },
    close: () => reader.close(),
  };
  return side;
}

/** The workspace now: files as `status` sees them (stat cache trusted where it matches). */
export async function workspaceSide(store: Store): Promise<Side> {
  const root = store.requireWorkspace('comparing with the workspace');
  let cache: Map<string, SideFile> | undefined;
  const files = async (): Promise<Map<string, SideFile>> => {
    if (!cache) {
      cache = new Map();
      const { files: work } = await scanWorkspace(root);
      for (const w of work) {
        const cached = store.index.stat(w.path);
        let kind: StatKind;
        let oid: string;
        let size = w.stat.size;
        if (cached && statMatches(cached, w.stat)) {
          kind = cached.kind;
          oid = cached.oid;
          size = cached.size;
        } else {
          const id = await identifyFile(store.repo, w, store.config.textMaxBytes);
          kind = id.kind;
          oid = id.oid;
          size = id.size;
        }
        cache.set(w.path, { path: w.path, mode: gitMode(w), kind, size, oid });
      }
    }
    return cache;
  };
  const abs = (file: string): string => path.join(root, ...file.split('/'));
  const readRange = async (file: string, start: number, length: number): Promise<Buffer> => {
    const fh = await open(abs(file), 'r');
    try {
      const buf = Buffer.alloc(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, start + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return buf.subarray(0, got);
    } finally {
      await fh.close();
    }
  };
  return {
    label: 'workspace',
    commit: undefined,
    meta: undefined,
    files,
    paths: async () => (cache ? [...cache.values()].filter((f) => f.kind !== 'link').map((f) => f.path) : (await scanWorkspace(root)).files.filter((w) => !w.isLink).map((w) => w.path)),
    read: readRange,
    async readAll(file) {
      try {
        return await readFile(abs(file));
      } catch {
        throw new MstoreError('ENOTFOUND', `the workspace has no file ${file}`, { what: file, where: 'the workspace' });
      }
    },
    async chunks(file) {
      const f = (await files()).get(file);
      if (!f || f.kind !== 'lfs') return undefined;
      if (f.size <= store.config.chunking.singleChunkBytes) {
        // Stored as one chunk (content.ts ingestSmall): so is its workspace twin.
        return [{ id: sha256(await readRange(file, 0, f.size)).toString('hex'), offset: 0, length: f.size }];
      }
      return workspaceChunks(abs(file), f.size, store.config.chunking.pieceBytes);
    },
    async close() {},
  };
}

/**
 * The chunks a commit would cut a workspace safetensors file into (others: one pseudo-chunk
 * per 4 MiB, enough to tell which regions changed). Reads and hashes the file.
 */
async function workspaceChunks(file: string, size: number, pieceBytes: number): Promise<SideChunk[]> {
  const fh = await open(file, 'r');
  try {
    let cuts: number[];
    try {
      cuts = chunkCuts(await readSafetensorsHeader(fh, size), size, pieceBytes);
    } catch {
      cuts = [];
      for (let o = pieceBytes; o < size; o += pieceBytes) cuts.push(o);
      cuts.push(size);
    }
    const out: SideChunk[] = [];
    let prev = 0;
    const buf = Buffer.alloc(Math.max(pieceBytes, ...cuts.map((c, i) => c - (i ? cuts[i - 1] : 0))));
    for (const cut of cuts) {
      const len = cut - prev;
      if (len <= 0) continue;
      let got = 0;
      while (got < len) {
        const { bytesRead } = await fh.read(buf, got, len - got, prev + got);
        if (bytesRead === 0) throw new MstoreError('EBADINPUT', `${file} changed while it was read`);
        got += bytesRead;
      }
      out.push({ id: sha256(buf.subarray(0, len)).toString('hex'), offset: prev, length: len });
      prev = cut;
    }
    return out;
  } finally {
    await fh.close();
  }
}
