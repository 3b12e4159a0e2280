/**
 * `import`: versions from a tar that `export` wrote (docs/format.md §16).
 *
 * Pass 1 reads the whole archive without writing anything and without the lock: every
 * header (names, types, sizes, order), and for a bundle every byte (git objects re-hash to
 * their names, chunks to theirs, manifests add up to the pointers' sizes), the git graph
 * (every object the refs reach is in the bundle or already in the store) and the refs (none
 * may move, except a line head that fast-forwards). Any problem: one MstoreError naming the
 * entry, nothing written.
 *
 * Pass 2, under the writer lock, reads it again, re-checking every entry against pass 1 and
 * re-hashing every object and chunk: chunks and manifests into sealed, indexed packs, git
 * objects into the repository, then a full `verify` of the imported versions, and only if it
 * passes the refs, through the ref history. The files layout commits each version directory
 * as a new version instead (import-files.ts). This module tells the layouts apart.
 */
import path from 'node:path';
import { stat } from 'node:fs/promises';
import { MstoreError } from '../../lib/errors.js';
import type { Store } from '../../repo/store.js';
import { BUNDLE_HEADER, type ExportFormat } from '../../format/bundle.js';
import { readTar } from './tar-reader.js';
import { importBundle } from './import-bundle.js';
import { importFiles } from './import-files.js';
import type { ImportOptions, ImportResult } from './import-result.js';

export type { ImportOptions, ImportResult, ImportedRef, ImportedVersion } from './import-result.js';

async function detectFormat(file: string, display: string): Promise<ExportFormat> {
  for await (const e of readTar(file, display)) {
    return e.header.name === BUNDLE_HEADER && e.header.type === 'file' ? 'bundle' : 'files';
  }
  throw new MstoreError('EBADINPUT', `${display}: empty archive`);
}

export async function importArchive(store: Store, opts: ImportOptions): Promise<ImportResult> {
  const file = path.resolve(opts.file);
  const display = opts.file;
  const st = await stat(file).catch((e: NodeJS.ErrnoException) => {
    throw new MstoreError('EBADINPUT', `${display}: ${e.code === 'ENOENT' ? 'no such file' : `cannot read it (${e.code})`}`);
  });
  if (!st.isFile()) throw new MstoreError('EBADINPUT', `${display}: not a regular file (import reads the archive twice)`);
  const format = await detectFormat(file, display);
  if (format === 'files') return importFiles(store, { ...opts, file, display, size: st.size });
  if (opts.line !== undefined) throw new MstoreError('EUSAGE', `--line applies to the files layout; ${display} is a bundle, whose versions keep their names`);
  return importBundle(store, file, display, st.size, opts);
}
