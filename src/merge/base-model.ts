/**
 * The base model directory: one safetensors file, or shards listed by
 * `model.safetensors.index.json` (`weight_map`: tensor → shard). Everything else in the
 * directory is a non-weight file that the merged model copies.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { MstoreError } from '../lib/errors.js';
import { isFile, openSafetensors, type StFile, type TensorRef } from './tensors.js';

export const INDEX_NAME = 'model.safetensors.index.json';

export interface BaseModel {
  dir: string;
  /** The weight files, in index order (first appearance in weight_map) or the single file. */
  files: StFile[];
  tensors: Map<string, TensorRef>;
  /** The shard index file name, when sharded. */
  index?: string;
}

export async function openBaseModel(dir: string): Promise<BaseModel> {
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch (e) {
    throw new MstoreError('EBADINPUT', `cannot read base model directory ${dir}: ${(e as Error).message}`);
  }
  const files: StFile[] = [];
  const tensors = new Map<string, TensorRef>();
  let index: string | undefined;
  let weightMap: Record<string, string> | undefined;
  if (names.includes(INDEX_NAME)) {
    index = INDEX_NAME;
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(path.join(dir, INDEX_NAME), 'utf8'));
    } catch (e) {
      throw new MstoreError('EBADINPUT', `${path.join(dir, INDEX_NAME)}: ${(e as Error).message}`);
    }
    const wm = (parsed as { weight_map?: unknown } | null)?.weight_map;
    if (!wm || typeof wm !== 'object' || Array.isArray(wm) || !Object.values(wm).every((v) => typeof v === 'string')) {
      throw new MstoreError('EBADINPUT', `${path.join(dir, INDEX_NAME)}: weight_map is not an object of tensor → file`);
    }
    weightMap = wm as Record<string, string>;
    const shards = [...new Set(Object.values(weightMap))];
    for (const s of shards) {
      if (s.includes('/') || s.includes('\\') || s.startsWith('.')) throw new MstoreError('EBADINPUT', `${INDEX_NAME}: shard name '${s}' is not a file name in the base directory`);
      if (!(await isFile(path.join(dir, s)))) throw new MstoreError('EBADINPUT', `${INDEX_NAME} names shard ${s}, which is not in ${dir}`);
      files.push(await openSafetensors(path.join(dir, s)));
    }
  } else {
    const st = names.filter((n) => n.endsWith('.safetensors'));
    const pick = st.includes('model.safetensors') ? ['model.safetensors'] : st;
    if (pick.length === 0) throw new MstoreError('EBADINPUT', `base model directory ${dir} holds no .safetensors file`);
    if (pick.length > 1) {
      throw new MstoreError('EBADINPUT', `base model directory ${dir} holds ${pick.length} .safetensors files and no ${INDEX_NAME}: which one is the model?`);
    }
    files.push(await openSafetensors(path.join(dir, pick[0])));
  }
  for (const f of files) {
    for (const info of f.header.tensors) {
      const seen = tensors.get(info.name);
      if (seen) throw new MstoreError('EBADINPUT', `tensor ${info.name} is in both ${path.basename(seen.file.path)} and ${path.basename(f.path)}`);
      if (weightMap && weightMap[info.name] !== path.basename(f.path)) {
        throw new MstoreError('EBADINPUT', `tensor ${info.name} is in ${path.basename(f.path)} but ${INDEX_NAME} maps it to ${weightMap[info.name] ?? 'nothing'}`);
      }
      tensors.set(info.name, { file: f, info });
    }
  }
  if (weightMap) {
    for (const [name, shard] of Object.entries(weightMap)) {
      if (!tensors.has(name)) throw new MstoreError('EBADINPUT', `${INDEX_NAME} maps tensor ${name} to ${shard}, which does not hold it`);
    }
  }
  return { dir, files, tensors, index };
}
