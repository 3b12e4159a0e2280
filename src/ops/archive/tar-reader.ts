/**
 * Streaming the entries of a tar file for import (docs/format.md §16.5.1): tar-stream's errors
 * of the archive itself become one-line EBADINPUT MstoreErrors naming the file and the last entry.
 */
import { createReadStream } from 'node:fs';
import { extract, type Header } from 'tar-stream';
import { MstoreError } from '../../lib/errors.js';

export interface TarEntry {
  header: Header;
  /** The content; must be consumed (readBody or skipBody) before the next entry is read. */
  body: AsyncIterable<Buffer>;
}

/**
 * Streams the entries of a tar file. Errors of the archive itself (bad checksum, truncated
 * data, unreadable file) become one-line EBADINPUT errors naming the file and the last entry.
 */
export async function* readTar(file: string, display: string, onBytes?: (n: number) => void): AsyncGenerator<TarEntry> {
  const rs = createReadStream(file, { highWaterMark: 1024 * 1024 });
  const ex = extract();
  rs.on('error', (e) => ex.destroy(e));
  if (onBytes) rs.on('data', (d) => onBytes(d.length));
  rs.pipe(ex as unknown as NodeJS.WritableStream);
  let last: string | undefined;
  const it = ex[Symbol.asyncIterator]();
  try {
    for (;;) {
      let r: IteratorResult<{ header: Header } & AsyncIterable<Buffer>>;
      try {
        r = (await it.next()) as IteratorResult<{ header: Header } & AsyncIterable<Buffer>>;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code ? `cannot read it (${code})` : `not a valid tar archive (${(e as Error).message.split('\n')[0]})`;
        throw new MstoreError('EBADINPUT', `${display}: ${why}${last !== undefined && !code ? ` after entry '${last}'` : ''}`);
      }
      if (r.done) return;
      last = r.value.header.name;
      yield { header: r.value.header, body: r.value };
    }
  } finally {
    rs.destroy();
    await it.return?.().catch(() => undefined);
  }
}

/** Reads a whole entry into memory; its declared size was already checked against a limit. */
export async function readBody(e: TarEntry): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of e.body) parts.push(b);
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
}

export async function skipBody(e: TarEntry): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  for await (const _ of e.body) {
    // discard
  }
}
