/**
 * git-lfs pointer files (spec v1, as docs/format.md §7.3 restates it): UTF-8 `key value\n` lines,
 * `version` first, then the other keys sorted. mstore writes exactly three lines. A size beyond
 * 2^53-1 (Number.MAX_SAFE_INTEGER) cannot be held exactly: such a pointer is damaged input,
 * refused at parse naming where it was read, never carried on as a rounded number.
 */
import { MstoreError } from '../lib/errors.js';

export const LFS_VERSION = 'https://git-lfs.github.com/spec/v1';

export interface Pointer {
  oid: string;
  size: number;
}

export function renderPointer(p: Pointer): string {
  return `version ${LFS_VERSION}\noid sha256:${p.oid}\nsize ${p.size}\n`;
}

const POINTER = /^version https:\/\/git-lfs\.github\.com\/spec\/v1\noid sha256:([0-9a-f]{64})\nsize (0|[1-9][0-9]*)\n$/;

/** A blob longer than this is never a pointer (docs/format.md §7.2). */
export const POINTER_MAX_BYTES = 1024;

function pointerMatch(data: Uint8Array): RegExpExecArray | null {
  if (data.length > POINTER_MAX_BYTES) return null;
  return POINTER.exec(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
}

/** Bytes shaped like a v1 pointer, whatever its size says (a file with this text is stored as content). */
export function isPointerText(data: Uint8Array): boolean {
  return pointerMatch(data) !== null;
}

/**
 * Parses a pointer blob; undefined when the bytes are not a v1 pointer. A size beyond
 * Number.MAX_SAFE_INTEGER throws ECORRUPT naming `where` (the version and file it was read for).
 */
export function parsePointer(data: Uint8Array, where = 'a git-lfs pointer'): Pointer | undefined {
  const m = pointerMatch(data);
  if (!m) return undefined;
  const size = Number(m[2]);
  if (!Number.isSafeInteger(size)) {
    throw new MstoreError('ECORRUPT', `${where}: git-lfs pointer says size ${m[2]} bytes, beyond the largest size mstore reads (2^53-1)`, { what: where });
  }
  return { oid: m[1], size };
}
