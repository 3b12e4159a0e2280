/**
 * What a workspace file becomes in a version's tree: a git blob (small text, empty
 * files), a git-lfs pointer blob whose content lives in chunks, or a symlink blob.
 */
import { readlink } from 'node:fs/promises';
import { MstoreError } from '../lib/errors.js';
import { sha256Hex } from '../lib/hashing.js';
import { isPointerText, renderPointer } from '../format/pointer.js';
import type { StatKind } from './index-db.js';
import type { GitRepo } from './git.js';
import type { ContentWriter, BytesCallback } from './content.js';
import { hashFile, isText, isTextCandidate, readSmallFile, type WorkFile } from './workspace.js';

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
    return { kind: 'link', oid: sha256Hex(data), blob: await repo.hashBlob(data), size: data.length, gitContent: data, newBytes: 0 };
  }
  if (f.stat.size === 0 || isTextCandidate(f.path, f.stat.size, textMaxBytes)) {
    const data = await readSmallFile(f.abs, f.path);
    // Text that happens to be a git-lfs pointer would be read back as one: store it as content.
    if (data.length === 0 || (isText(data) && !isPointerText(data))) {
      onBytes?.(data.length);
      return { kind: 'git', oid: sha256Hex(data), blob: await repo.hashBlob(data), size: data.length, gitContent: data, newBytes: data.length };
    }
  }
  let oid: string;
  let size = f.stat.size;
  let warning: string | undefined;
  let newBytes = 0;
  if (writer) {
    const r = await writer.ingest(f.abs, f.path, onBytes);
    oid = r.oid;
    size = r.size;
    warning = r.warning;
    newBytes = r.newBytes;
  } else {
    oid = await hashFile(f.abs, f.path);
    onBytes?.(size);
  }
  const pointer = Buffer.from(renderPointer({ oid, size }));
  return { kind: 'lfs', oid, blob: await repo.hashBlob(pointer), size, gitContent: pointer, warning, newBytes };
}
