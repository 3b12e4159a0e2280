/**
 * The bundle rules (docs/format.md §16.3.3, §16.5.2) that come from the store's own content
 * format: the largest chunk (one read slot) and the manifest records. Kept out of
 * format/bundle.ts, which may not import repo/.
 */
import { SLOT_BYTES } from '../../repo/content-slots.js';
import { MANIFEST_RECORD } from '../../repo/index-db.js';

/** mstore reads content in runs of at most one slot: a larger chunk could never be checked out. */
export const MAX_CHUNK_BYTES = SLOT_BYTES;

/** Sum of the chunk lengths of a manifest (36-byte records), or a problem string. */
export function manifestSize(manifest: Buffer): number | string {
  if (manifest.length % MANIFEST_RECORD !== 0) return `manifest length ${manifest.length} is not a multiple of ${MANIFEST_RECORD}`;
  let size = 0;
  for (let o = 0; o < manifest.length; o += MANIFEST_RECORD) {
    const len = manifest.readUInt32LE(o + 32);
    if (len === 0 || len > MAX_CHUNK_BYTES) return `manifest names a chunk of ${len} bytes`;
    size += len;
  }
  return size;
}
