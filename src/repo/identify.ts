/**
 * What a workspace file becomes in a version's tree: a git blob (small text, empty
 * files), a git-lfs pointer blob whose content lives in chunks, or a symlink blob.
 */
import { readlink } from 'node:fs/promises';
import { MstoreError } from '../lib/errors.js';
import { sha256Hex } from '../lib/hashing.js';
import { isPointerText, renderPointer } from '../format/pointer.js';
import type { StatEntry, StatKind, StoreIndex } from './index-db.js';
import { hasObject } from './git-walk.js';
import type { GitRepo } from './git.js';
import type { ContentWriter, BytesCallback } from './content.js';
import { hashFile, isText, isTextCandidate, readSmallFile, statInfoOf, statMatches, type StatInfo, type WorkFile } from './workspace.js';

export interface Identity {
  kind: StatKind;
  /** sha256 of the file's content (of the link target for symlinks). */
  oid: string;
  /** git blob id of what the tree stores. */
  blob: string;
  size: number;
  /** The bytes of the git blob (text, pointer or link target). */
  gitContent: Buffer;
  warning?: string;
  newBytes: number;
  /** The stat the content belongs to (taken around its read: src/lib/stable-read.ts). */
  stat: StatInfo;
}

/**
 * With `writer`, large content is stored in chunks; without, it is only hashed
 * (status and checkout conflict checks).
 */
export async function identifyFile(
  repo: GitRepo,
  f: WorkFile,
  textMaxBytes: number,
  writer?: ContentWriter,
  onBytes?: BytesCallback,
): Promise<Identity> {
  if (f.isLink) {
    let target: string;
    try {
      target = await readlink(f.abs);
    } catch (e) {
      throw new MstoreError('EBADINPUT', `cannot read symlink ${f.path}: ${(e as NodeJS.ErrnoException).code}`);
    }
    const data = Buffer.from(target);
    return { kind: 'link', oid: sha256Hex(data), blob: await repo.hashBlob(data), size: data.length, gitContent: data, newBytes: 0, stat: f.stat };
  }
  if (f.stat.size === 0 || isTextCandidate(f.path, f.stat.size, textMaxBytes)) {
    const { data, stat } = await readSmallFile(f.abs, f.path);
    if (keptInGit(data)) {
      onBytes?.(data.length);
      return { ...(await gitIdentity(repo, data)), stat };
    }
  }
  let oid: string;
  let size: number;
  let stat: StatInfo;
  let warning: string | undefined;
  let newBytes = 0;
  if (writer) {
    const r = await writer.ingest(f.abs, f.path, onBytes);
    oid = r.oid;
    size = r.size;
    warning = r.warning;
    newBytes = r.newBytes;
    stat = statInfoOf(r.stat);
  } else {
    ({ oid, stat } = await hashFile(f.abs, f.path));
    size = stat.size;
    onBytes?.(size);
  }
  return { ...(await pointerIdentity(repo, oid, size, newBytes)), warning, stat };
}

type ContentIdentity = Omit<Identity, 'stat' | 'warning'>;

/** Small bytes kept as a git blob: empty, or text (text that reads as a git-lfs pointer would be read back as one: it is content). */
function keptInGit(data: Buffer): boolean {
  return data.length === 0 || (isText(data) && !isPointerText(data));
}

async function gitIdentity(repo: GitRepo, data: Buffer): Promise<ContentIdentity> {
  return { kind: 'git', oid: sha256Hex(data), blob: await repo.hashBlob(data), size: data.length, gitContent: data, newBytes: data.length };
}

/** Content `oid` of `size` bytes as a file of a tree: its git-lfs pointer, a git blob. */
export async function pointerIdentity(repo: GitRepo, oid: string, size: number, newBytes: number): Promise<ContentIdentity> {
  const pointer = Buffer.from(renderPointer({ oid, size }));
  return { kind: 'lfs', oid, blob: await repo.hashBlob(pointer), size, gitContent: pointer, newBytes };
}

/**
 * What bytes made in memory (a merged model's adjusted config.json) become as the file `p` of a
 * tree, by identifyFile's rules: small text a git blob, anything else content stored through
 * `writer` behind a git-lfs pointer.
 */
export async function identifyBytes(
  repo: GitRepo,
  p: string,
  data: Buffer,
  textMaxBytes: number,
  writer: ContentWriter,
): Promise<ContentIdentity> {
  if ((data.length === 0 || isTextCandidate(p, data.length, textMaxBytes)) && keptInGit(data)) return gitIdentity(repo, data);
  const out = writer.stream(data.length, p);
  await out.write(data);
  const { oid, size, newBytes } = await out.end();
  return pointerIdentity(repo, oid, size, newBytes);
}

/**
 * What the stat cache says a file is, when it can be trusted: the entry still describes the
 * file (statMatches: same stat, not racy) and names only what the store holds — its blob in
 * the git repository, or, for a git-lfs pointer, its content in the index and a blob that is
 * that content's pointer (the pointer is then returned, to be written again if its blob is
 * gone). Undefined: drop the entry and hash the file. A presence check, never a re-hash.
 */
export async function cachedIdentity(
  repo: GitRepo,
  index: StoreIndex,
  e: StatEntry | undefined,
  s: StatInfo,
): Promise<{ blob: string; size: number; gitContent?: Buffer } | undefined> {
  if (!e || !statMatches(e, s)) return undefined;
  if (e.kind === 'lfs') {
    if (!/^[0-9a-f]{64}$/.test(e.oid) || !index.hasContent(Buffer.from(e.oid, 'hex'))) return undefined;
    const pointer = Buffer.from(renderPointer({ oid: e.oid, size: e.size }));
    if ((await repo.hashBlob(pointer)) !== e.blob) return undefined;
    return { blob: e.blob, size: e.size, gitContent: (await hasObject(repo.gitdir, e.blob)) ? undefined : pointer };
  }
  if (!/^[0-9a-f]{40}$/.test(e.blob) || !(await hasObject(repo.gitdir, e.blob))) return undefined;
  return { blob: e.blob, size: e.size };
}
