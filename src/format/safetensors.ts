/**
 * safetensors header validation by the official parser's rules (docs/format.md §4.2) and the
 * tensor-aware chunk plan: cut at the end of the header and at every tensor boundary,
 * big regions in fixed pieces aligned to their start, so an unchanged tensor dedups exactly.
 */
import type { FileHandle } from 'node:fs/promises';

export const MAX_HEADER_BYTES = 100_000_000;

/** Bits per element; F6/F4 are sub-byte and must fill whole bytes. */
const DTYPE_BITS: Record<string, number> = {
  BOOL: 8, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8,
  I16: 16, U16: 16, F16: 16, BF16: 16,
  I32: 32, U32: 32, F32: 32,
  I64: 64, U64: 64, F64: 64, C64: 64,
  F6_E2M3: 6, F6_E3M2: 6, F4: 4,
};

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Offsets relative to the data buffer, [begin, end). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Byte length of the JSON header (N). The data buffer starts at 8 + N. */
  headerBytes: number;
  dataStart: number;
  tensors: TensorInfo[];
  metadata: Record<string, string> | undefined;
}

/**
 * The 8-byte little-endian header length N, checked against MAX_HEADER_BYTES as the 64-bit
 * integer it is (a length beyond 2^53 would otherwise be rounded, and printed rounded).
 */
export function headerLength(prefix8: Buffer): number {
  const n = prefix8.readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER_BYTES)) throw new Error(`header length ${n} exceeds ${MAX_HEADER_BYTES}`);
  return Number(n);
}

/** Throws an Error whose message says what is wrong; callers add the file name. */
export function parseSafetensorsHeader(prefix8: Uint8Array, headerJson: Uint8Array, fileSize: number): SafetensorsHeader {
  if (fileSize < 8) throw new Error('shorter than the 8-byte header length');
  const n = headerLength(Buffer.from(prefix8.buffer, prefix8.byteOffset, 8));
  if (8 + n > fileSize) throw new Error(`header length ${n} runs past the end of the file`);
  if (headerJson.length !== n) throw new Error('header truncated');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerJson);
  } catch {
    throw new Error('header is not valid UTF-8');
  }
  if (!text.startsWith('{')) throw new Error('header does not start with "{"');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error('header is not valid JSON');
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('header is not a JSON object');
  let metadata: Record<string, string> | undefined;
  const tensors: TensorInfo[] = [];
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error('__metadata__ is not an object');
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') throw new Error(`__metadata__.${k} is not a string`);
      }
      metadata = value as Record<string, string>;
      continue;
    }
    tensors.push(parseTensor(name, value));
  }
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const t of tensors) {
    if (t.begin !== expected) {
      throw new Error(`tensor ${t.name} starts at ${t.begin}, expected ${expected} (gap or overlap)`);
    }
    expected = t.end;
  }
  const bufferBytes = fileSize - 8 - n;
  if (expected !== bufferBytes) {
    throw new Error(`tensors cover ${expected} bytes but the data buffer holds ${bufferBytes}`);
  }
  return { headerBytes: n, dataStart: 8 + n, tensors, metadata };
}

function parseTensor(name: string, value: unknown): TensorInfo {
  if (!value || typeof value !== 'object') throw new Error(`tensor ${name}: entry is not an object`);
  const v = value as Record<string, unknown>;
  const dtype = v.dtype;
  if (typeof dtype !== 'string' || !(dtype in DTYPE_BITS)) throw new Error(`tensor ${name}: unknown dtype ${String(dtype)}`);
  const shape = v.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new Error(`tensor ${name}: shape is not a list of non-negative integers`);
  }
  const offs = v.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new Error(`tensor ${name}: data_offsets is not [begin, end]`);
  }
  const [begin, end] = offs as number[];
  if (end < begin) throw new Error(`tensor ${name}: data_offsets end before begin`);
  const elements = (shape as number[]).reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(elements)) throw new Error(`tensor ${name}: shape ${JSON.stringify(shape)} has more than 2^53-1 elements`);
  const bits = elements * DTYPE_BITS[dtype];
  if (bits % 8 !== 0) throw new Error(`tensor ${name}: ${elements} elements of ${dtype} do not fill whole bytes`);
  if (end - begin !== bits / 8) {
    throw new Error(`tensor ${name}: ${end - begin} bytes but shape ${JSON.stringify(shape)} of ${dtype} needs ${bits / 8}`);
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

/** Reads and validates the header of an open file. */
export async function readSafetensorsHeader(fh: FileHandle, fileSize: number): Promise<SafetensorsHeader> {
  const prefix = Buffer.alloc(8);
  if (fileSize < 8) throw new Error('shorter than the 8-byte header length');
  await readExactly(fh, prefix, 0);
  const n = headerLength(prefix);
  if (8 + n > fileSize) throw new Error(`header length ${n} runs past the end of the file`);
  const json = Buffer.alloc(n);
  await readExactly(fh, json, 8);
  return parseSafetensorsHeader(prefix, json, fileSize);
}

async function readExactly(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) throw new Error('file ended early');
    done += bytesRead;
  }
}

/**
 * Absolute cut offsets (each chunk ends at one; the last equals the file size):
 * the header region [0, dataStart) and each tensor, each split every `pieceBytes`
 * from its own start.
 */
export function chunkCuts(h: SafetensorsHeader, fileSize: number, pieceBytes: number): number[] {
  const cuts: number[] = [];
  const region = (start: number, end: number): void => {
    for (let p = start + pieceBytes; p < end; p += pieceBytes) cuts.push(p);
    if (end > start) cuts.push(end);
  };
  region(0, h.dataStart);
  for (const t of h.tensors) region(h.dataStart + t.begin, h.dataStart + t.end);
  if (cuts.length === 0 || cuts[cuts.length - 1] !== fileSize) cuts.push(fileSize);
  return cuts;
}
