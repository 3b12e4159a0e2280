/** What `import` takes and returns, shared by both layouts (import-bundle.ts, import-files.ts). */
import type { ExportFormat } from '../../format/bundle.js';

export interface ImportOptions {
  file: string;
  /** Files layout only: the line every version is committed on (default: the line in its version.json). */
  line?: string;
  onProgress?: (p: { done: number; total: number }) => void;
}

export interface ImportedRef {
  ref: string;
  old: string | null;
  new: string;
  action: 'created' | 'unchanged' | 'fast-forward';
}

export interface ImportedVersion {
  /** The version's name in this store. */
  name: string;
  commit: string;
  /** Files layout: the directory it came from. */
  from?: string;
  line?: string;
}

export interface ImportResult {
  format: ExportFormat;
  file: string;
  versions: ImportedVersion[];
  refs: ImportedRef[];
  /** Git objects in the archive (bundle). */
  gitObjects: number;
  /** Chunks in the archive, and those this store lacked. */
  chunks: number;
  newChunks: number;
  /** Bytes of chunk data newly stored. */
  newBytes: number;
  /** Bytes of file content re-hashed by the verification (bundle). */
  verifiedBytes: number;
}

/** The layout of an archive, from its first entry. */
