/**
 * safetensors files for the merge: the validated header (format/safetensors.ts, the official
 * parser's rules), the header's raw JSON (written back verbatim, so tensor order, `__metadata__`
 * and every byte of the header survive), and tensors read as fp32.
 */
import path from 'node:path';
import { headerLength, parseSafetensorsHeader, type SafetensorsHeader, type TensorInfo } from '../format/safetensors.js';
import { MstoreError } from '../lib/errors.js';
import { DT_BF16, DT_F16, DT_F32, type DtypeCode, type Kernel } from './kernel.js';
import { FileSource, type ByteSource } from './source.js';

export interface StFile {
  /** The source's name: what errors call the file. */
  path: string;
  /** The file's name in its model directory. */
  name: string;
  source: ByteSource;
  size: number;
  header: SafetensorsHeader;
  /** The header JSON exactly as stored (N bytes). */
  headerJson: Buffer;
  /** Tensors by name. */
  byName: Map<string, TensorInfo>;
}

export interface TensorRef {
  file: StFile;
  info: TensorInfo;
}

/** A safetensors file on disk (read through a FileSource: opened for each read). */
export async function openSafetensors(file: string): Promise<StFile> {
  return readStFile(await FileSource.open(file));
}

/**
 * The validated header of a safetensors file read from `source` (format/safetensors.ts, the
 * official parser's rules); `name`, its name in a model directory, defaults to the source's base name.
 */
export async function readStFile(source: ByteSource, name = path.basename(source.name)): Promise<StFile> {
  const file = source.name;
  let header: SafetensorsHeader;
  let headerJson: Buffer;
  try {
    if (source.size < 8) throw new Error('shorter than the 8-byte header length');
    const prefix = Buffer.alloc(8);
    await source.read(prefix, 0);
    const n = headerLength(prefix);
    if (8 + n > source.size) throw new Error(`header length ${n} runs past the end of the file`);
    headerJson = Buffer.alloc(n);
    await source.read(headerJson, 8);
    header = parseSafetensorsHeader(prefix, headerJson, source.size);
  } catch (e) {
    // A store's read error (a damaged chunk) stays what it is; anything else is this file's fault.
    if (e instanceof MstoreError && e.code !== 'EBADINPUT') throw e;
    throw new MstoreError('EBADINPUT', `${file}: not a valid safetensors file: ${(e as Error).message.replace(`${file}: `, '')}`);
  }
  return { path: file, name, source, size: source.size, header, headerJson, byName: new Map(header.tensors.map((t) => [t.name, t])) };
}

export function dtypeCode(dtype: string): DtypeCode | undefined {
  return dtype === 'BF16' ? DT_BF16 : dtype === 'F16' ? DT_F16 : dtype === 'F32' ? DT_F32 : undefined;
}

export const DTYPE_BYTES = [2, 2, 4] as const;

/** The dtype code of a tensor the merge must compute with; other dtypes are an error naming it. */
export function floatDtype(t: TensorRef): DtypeCode {
  const c = dtypeCode(t.info.dtype);
  if (c === undefined) {
    throw new MstoreError('EBADINPUT', `tensor ${t.info.name} in ${t.file.name} has dtype ${t.info.dtype}; the merge computes with BF16, F16 and F32 only`);
  }
  return c;
}

export function elements(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Reads [begin, end) of a tensor's bytes (relative to the tensor) into `into` (or a new array). */
export async function readTensorBytes(t: TensorRef, begin = 0, end = t.info.end - t.info.begin, into?: Uint8Array): Promise<Uint8Array> {
  const n = end - begin;
  const buf = into ? into.subarray(0, n) : new Uint8Array(n);
  await t.file.source.read(buf, t.file.header.dataStart + t.info.begin + begin);
  return buf;
}

/** A whole (small) tensor as fp32. */
export async function readTensorF32(t: TensorRef, kernel: Kernel): Promise<Float32Array> {
  const code = floatDtype(t);
  return kernel.decode(await readTensorBytes(t), code);
}

export function shapeText(shape: number[]): string {
  return `[${shape.join(', ')}]`;
}
