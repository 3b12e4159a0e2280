/**
 * safetensors files for the merge: the validated header (format/safetensors.ts, the official
 * parser's rules), the header's raw JSON (written back verbatim, so tensor order, `__metadata__`
 * and every byte of the header survive), and tensors read as fp32.
 */
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { readSafetensorsHeader, type SafetensorsHeader, type TensorInfo } from '../format/safetensors.js';
import { MstoreError } from '../lib/errors.js';
import { DT_BF16, DT_F16, DT_F32, type DtypeCode, type Kernel } from './kernel.js';

export interface StFile {
  path: string;
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

export async function openSafetensors(file: string): Promise<StFile> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    throw new MstoreError('EBADINPUT', `cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    const size = (await fh.stat()).size;
    let header: SafetensorsHeader;
    try {
      header = await readSafetensorsHeader(fh, size);
    } catch (e) {
      throw new MstoreError('EBADINPUT', `${file}: not a valid safetensors file: ${(e as Error).message}`);
    }
    const headerJson = Buffer.alloc(header.headerBytes);
    await fh.read(headerJson, 0, headerJson.length, 8);
    return { path: file, size, header, headerJson, byName: new Map(header.tensors.map((t) => [t.name, t])) };
  } finally {
    await fh.close();
  }
}

export async function isFile(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isFile(), () => false);
}

export function dtypeCode(dtype: string): DtypeCode | undefined {
  return dtype === 'BF16' ? DT_BF16 : dtype === 'F16' ? DT_F16 : dtype === 'F32' ? DT_F32 : undefined;
}

export const DTYPE_BYTES = [2, 2, 4] as const;

/** The dtype code of a tensor the merge must compute with; other dtypes are an error naming it. */
export function floatDtype(t: TensorRef): DtypeCode {
  const c = dtypeCode(t.info.dtype);
  if (c === undefined) {
    throw new MstoreError('EBADINPUT', `tensor ${t.info.name} in ${path.basename(t.file.path)} has dtype ${t.info.dtype}; the merge computes with BF16, F16 and F32 only`);
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
  const fh = await open(t.file.path, 'r');
  try {
    let done = 0;
    const pos = t.file.header.dataStart + t.info.begin + begin;
    while (done < n) {
      const { bytesRead } = await fh.read(buf, done, n - done, pos + done);
      if (bytesRead === 0) throw new MstoreError('EBADINPUT', `${t.file.path}: ended early inside tensor ${t.info.name}`);
      done += bytesRead;
    }
  } finally {
    await fh.close();
  }
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
