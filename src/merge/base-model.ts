/**
 * The base model directory: one safetensors file, or shards listed by
 * `model.safetensors.index.json` (`weight_map`: tensor → shard). Everything else in the
 * directory is a non-weight file that the merged model copies (merge.ts: otherFiles).
 */
import path from 'node:path';
import { MstoreError } from '../lib/errors.js';
import { readStFile, type StFile, type TensorRef } from './tensors.js';
import type { ModelFiles } from './source.js';

export const INDEX_NAME = 'model.safetensors.index.json';

export interface BaseModel {
  dir: string;
  /** The weight files, in index order (first appearance in weight_map) or the single file. */
  files: StFile[];
  tensors: Map<string, TensorRef>;
  /** The shard index file name, when sharded. */
  index?: string;
}

/** The `weight_map` of a shard index (tensor -> shard file name), checked; `where` names the index in errors. */
export function parseWeightMap(text: string, where: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new MstoreError('EBADINPUT', `${where}: ${(e as Error).message}`);
  }
  const wm = (parsed as { weight_map?: unknown } | null)?.weight_map;
  if (!wm || typeof wm !== 'object' || Array.isArray(wm) || !Object.values(wm).every((v) => typeof v === 'string')) {
    throw new MstoreError('EBADINPUT', `${where}: weight_map is not an object of tensor → file`);
  }
  for (const s of new Set(Object.values(wm as Record<string, string>))) {
    if (s.includes('/') || s.includes('\\') || s.startsWith('.')) throw new MstoreError('EBADINPUT', `${INDEX_NAME}: shard name '${s}' is not a file name in the base directory`);
  }
  return wm as Record<string, string>;
}

/** The shard file names a weight map names, in order of first appearance. */
export function shardNames(weightMap: Record<string, string>): string[] {
  return [...new Set(Object.values(weightMap))];
}

/** The base model in `files`: its index and shards, or its one safetensors file. */
export async function openBaseModel(files: ModelFiles): Promise<BaseModel> {
  const dir = files.name;
  const names = (await files.list()).map((e) => e.path).filter((p) => !p.includes('/'));
  const weightFile = async (name: string): Promise<StFile> => readStFile(await files.source(name), name);
  if (names.includes(INDEX_NAME)) {
    const where = path.join(dir, INDEX_NAME);
    const weightMap = parseWeightMap(await files.text(INDEX_NAME), where);
    const shards: StFile[] = [];
    for (const s of shardNames(weightMap)) {
      if (!names.includes(s)) throw new MstoreError('EBADINPUT', `${INDEX_NAME} names shard ${s}, which is not in ${dir}`);
      shards.push(await weightFile(s));
    }
    return assembleBaseModel(dir, shards, weightMap);
  }
  const st = names.filter((n) => n.endsWith('.safetensors'));
  const pick = st.includes('model.safetensors') ? ['model.safetensors'] : st;
  if (pick.length === 0) throw new MstoreError('EBADINPUT', `base model directory ${dir} holds no .safetensors file`);
  if (pick.length > 1) {
    throw new MstoreError('EBADINPUT', `base model directory ${dir} holds ${pick.length} .safetensors files and no ${INDEX_NAME}: which one is the model?`);
  }
  return assembleBaseModel(dir, [await weightFile(pick[0])]);
}

/**
 * A base model from its weight files (the shards in the order `weightMap` names them, or the one
 * file) wherever they are read from: every tensor in one file, and where there is a weight map,
 * in the file it names, every tensor it names present. `dir` is what errors and copies call it.
 */
export function assembleBaseModel(dir: string, files: StFile[], weightMap?: Record<string, string>): BaseModel {
  const tensors = new Map<string, TensorRef>();
  for (const f of files) {
    for (const info of f.header.tensors) {
      const seen = tensors.get(info.name);
      if (seen) throw new MstoreError('EBADINPUT', `tensor ${info.name} is in both ${seen.file.name} and ${f.name}`);
      if (weightMap && weightMap[info.name] !== f.name) {
        throw new MstoreError('EBADINPUT', `tensor ${info.name} is in ${f.name} but ${INDEX_NAME} maps it to ${weightMap[info.name] ?? 'nothing'}`);
      }
      tensors.set(info.name, { file: f, info });
    }
  }
  if (weightMap) {
    for (const [name, shard] of Object.entries(weightMap)) {
      if (!tensors.has(name)) throw new MstoreError('EBADINPUT', `${INDEX_NAME} maps tensor ${name} to ${shard}, which does not hold it`);
    }
  }
  return { dir, files, tensors, index: weightMap ? INDEX_NAME : undefined };
}
