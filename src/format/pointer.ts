/**
 * git-lfs pointer files (spec v1, as docs/format.md §7.3 restates it): UTF-8 `key value\n` lines,
 * `version` first, then the other keys sorted. mstore writes exactly three lines.
 */
export const LFS_VERSION = 'https://git-lfs.github.com/spec/v1';

export interface Pointer {
  oid: string;
  size: number;
}

export function renderPointer(p: Pointer): string {
  return `version ${LFS_VERSION}\noid sha256:${p.oid}\nsize ${p.size}\n`;
}

/** Parses a pointer blob; undefined when the bytes are not a v1 pointer. */
export function parsePointer(data: Uint8Array): Pointer | undefined {
  if (data.length > 1024) return undefined;
  const text = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8');
  const m = /^version https:\/\/git-lfs\.github\.com\/spec\/v1\noid sha256:([0-9a-f]{64})\nsize (0|[1-9][0-9]*)\n$/.exec(text);
  if (!m) return undefined;
  return { oid: m[1], size: Number(m[2]) };
}
