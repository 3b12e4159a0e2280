/**
 * The S3 transport's packs and their .idx objects (docs/protocol.md §3): where they live in
 * the bucket, how a pack is filled and sealed in memory in the local pack format
 * (docs/format.md §5), and how an .idx is checked before anything it lists is trusted. No
 * requests: s3.ts sends what this builds and reads.
 */
import { ENTRY_CHUNK, ENTRY_FILE, ENTRY_RECIPE, FOOTER_BYTES, PACK_END_MAGIC, PACK_MAGIC, TABLE_ENTRY_BYTES, encodePackTail, parsePackTail } from '../../repo/pack.js';
import { MANIFEST_RECORD } from '../../repo/index-db.js';
import { MAX_OBJECT_BYTES } from '../wire.js';
import { RECIPE_RECORD_MAX } from '../../format/recipe.js';

/** What a pack entry holds, by its type (docs/format.md §5). */
export type PackedKind = 'chunk' | 'file' | 'recipe';
const ENTRY_OF: Record<PackedKind, number> = { chunk: ENTRY_CHUNK, file: ENTRY_FILE, recipe: ENTRY_RECIPE };
const KIND_OF: Record<number, PackedKind> = { [ENTRY_CHUNK]: 'chunk', [ENTRY_FILE]: 'file', [ENTRY_RECIPE]: 'recipe' };

/** Packs are sealed at this size: bounds memory (one pack being filled, one uploading) and what a killed push re-sends. */
export const S3_PACK_BYTES = 64 * 1024 * 1024;
/** Hostile-input bound on a file manifest, sent or listed. */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
/** Pack buffers: room for a full pack, the entry that crosses the limit, and a typical table. */
export const PACK_BUFFER_BYTES = S3_PACK_BYTES + MAX_OBJECT_BYTES + 1024 * 1024;

export const packKey = (id: string): string => `data/${id.slice(0, 2)}/${id}.pack`;
export const idxKey = (id: string): string => `index/${id}.idx`;

/** Where an entry's bytes are: its pack and the range in it. */
export interface Loc {
  pack: string;
  offset: number;
  length: number;
}

/** A pack being filled: magic and entries copied back to back into `buf` (reused, see S3Remote.send). */
export interface PackParts {
  buf: Buffer;
  used: number;
  entries: { type: number; id: string; length: number }[];
  bytes: number;
}

/** A pack in `buf`, with no entry yet. */
export function startPack(buf: Buffer): PackParts {
  PACK_MAGIC.copy(buf, 0);
  return { buf, used: PACK_MAGIC.length, entries: [], bytes: 0 };
}

/** The buffer size a pack needs for a first entry of `bytes`. */
export const packBytesFor = (bytes: number): number => PACK_MAGIC.length + bytes;

/** Copies an entry in; the caller has made sure it fits. True once the pack is full (S3_PACK_BYTES). */
export function addEntry(p: PackParts, kind: PackedKind, id: string, data: Buffer): boolean {
  data.copy(p.buf, p.used);
  p.used += data.length;
  p.entries.push({ type: ENTRY_OF[kind], id, length: data.length });
  p.bytes += data.length;
  return PACK_MAGIC.length + p.bytes >= S3_PACK_BYTES;
}

/** Seals a pack in memory: its id, its .idx (table and footer), its size, and its bytes (in `buf` when the table fits there). */
export function sealPack(p: PackParts): { id: string; idx: Buffer; size: number; bytes: () => Buffer } {
  const { id, tail: idx } = encodePackTail(p.entries.map((e) => ({ type: e.type, length: e.length, id: Buffer.from(e.id, 'hex') })));
  const size = p.used + idx.length;
  const bytes = (): Buffer => {
    if (size > p.buf.length) return Buffer.concat([p.buf.subarray(0, p.used), idx], size);
    idx.copy(p.buf, p.used);
    return p.buf.subarray(0, size);
  };
  return { id, idx, size, bytes };
}

/** Checks an .idx (table hash = pack id, sane entries) and says where each entry lives; throws an Error naming the problem. */
export function readIdx(id: string, data: Buffer): { kind: PackedKind; id: string; loc: Loc }[] {
  if (data.length < FOOTER_BYTES || !data.subarray(data.length - 8).equals(PACK_END_MAGIC)) throw new Error('not a pack table (bad footer)');
  const count = data.readUInt32LE(data.length - 12);
  if (data.length !== count * TABLE_ENTRY_BYTES + FOOTER_BYTES) throw new Error(`${data.length} bytes does not fit ${count} table records`);
  let total = 0;
  for (let i = 0; i < count; i++) total += data.readUInt32LE(i * TABLE_ENTRY_BYTES + 1);
  const entries = parsePackTail(id, PACK_MAGIC.length + total + data.length, data);
  for (const e of entries) {
    const ok =
      e.type === ENTRY_CHUNK
        ? e.length > 0 && e.length <= MAX_OBJECT_BYTES
        : e.type === ENTRY_FILE
          ? e.length > 0 && e.length % MANIFEST_RECORD === 0 && e.length <= MAX_MANIFEST_BYTES
          : e.type === ENTRY_RECIPE && e.length > 0 && e.length <= RECIPE_RECORD_MAX;
    if (!ok) throw new Error(`entry ${e.id.toString('hex')} has type ${e.type} and length ${e.length}`);
  }
  return entries.map((e) => ({ kind: KIND_OF[e.type], id: e.id.toString('hex'), loc: { pack: id, offset: e.offset, length: e.length } }));
}
