/**
 * Append-only JSON-lines journals: one JSON object per `\n`-terminated line, oldest first.
 * The ref history (`reflog.jsonl`), the backup records (`backups.jsonl`) and the deploy
 * attempts (`deploy/attempts.jsonl`) all go through here (docs/format.md §13); their record
 * types stay with their owners. Writers are serialised by the callers (each journal is only
 * appended under its store's or its deploy's lock); readers take no lock.
 *
 * A crash during an append can leave a last line without its `\n` (torn). The next append
 * starts on a fresh line, so the torn bytes stay a line of their own, and readers skip every
 * line that does not parse as a JSON object: each complete record is read back, always.
 */
import { mkdir, readFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir, open } from './fsutil.js';
import { storageError } from './errors.js';

const NEWLINE = 0x0a;
/** Bytes read per step when reading from the end: a few hundred records of the ref history. */
const TAIL_CHUNK = 64 * 1024;

/** A line's record, or undefined for what is not one (a torn line, an empty one). */
function parseLine<T>(line: string): T | undefined {
  if (!line) return undefined;
  try {
    const v: unknown = JSON.parse(line);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as T) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Appends records, one line each, in one write, then fdatasync: durable when this returns.
 * Creates the file (and its directory) when missing; a new file's directory is fsynced too,
 * so the journal itself survives a power loss, not only its bytes.
 */
export async function appendRecords<T>(file: string, records: readonly T[]): Promise<void> {
  if (!records.length) return;
  let fh: FileHandle;
  try {
    fh = await open(file, 'a+');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    await mkdir(path.dirname(file), { recursive: true });
    fh = await open(file, 'a+');
  }
  let size: number;
  try {
    size = (await fh.stat()).size;
    let text = records.map((r) => JSON.stringify(r)).join('\n') + '\n';
    if (size > 0) {
      // A torn last line (no `\n`): start on a fresh line so it cannot swallow this record.
      const last = Buffer.alloc(1);
      await fh.read(last, 0, 1, size - 1);
      if (last[0] !== NEWLINE) text = `\n${text}`;
    }
    const data = Buffer.from(text, 'utf8');
    try {
      for (let o = 0; o < data.length; ) o += (await fh.write(data, o, data.length - o)).bytesWritten;
      await fh.datasync();
    } catch (e) {
      // A full disk: take back the part that was written, so no torn line stays behind.
      await fh.truncate(size).catch(() => undefined);
      throw storageError(e, file) ?? e;
    }
  } finally {
    await fh.close();
  }
  if (size === 0) await fsyncDir(path.dirname(file));
}

/** Every record, oldest first; torn or unparsable lines are skipped. A missing file has none. */
export async function readRecords<T>(file: string): Promise<T[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: T[] = [];
  for (const line of text.split('\n')) {
    const r = parseLine<T>(line);
    if (r) out.push(r);
  }
  return out;
}

async function readAt(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  for (let o = 0; o < buf.length; ) {
    const { bytesRead } = await fh.read(buf, o, buf.length - o, position + o);
    if (!bytesRead) throw new Error(`short read at ${position + o}`);
    o += bytesRead;
  }
}

/**
 * The records newest first, read backwards from the end in 64 KiB steps: a caller that stops
 * early (the last N, the last operation, the latest move of one ref) reads only the tail.
 * Sees the file as it was when the iteration started; skips what `readRecords` skips.
 */
export async function* recordsFromEnd<T>(file: string, chunkBytes = TAIL_CHUNK): AsyncGenerator<T> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  try {
    let pos = (await fh.stat()).size;
    // The start of the line being assembled, across chunks (earliest piece first).
    let partial: Buffer[] = [];
    while (pos > 0) {
      const n = Math.min(chunkBytes, pos);
      pos -= n;
      const buf = Buffer.alloc(n);
      await readAt(fh, buf, pos);
      let end = n;
      for (let i = buf.lastIndexOf(NEWLINE, end - 1); i >= 0; i = end > 0 ? buf.lastIndexOf(NEWLINE, end - 1) : -1) {
        const piece = buf.subarray(i + 1, end);
        const line = partial.length ? Buffer.concat([piece, ...partial]) : piece;
        partial = [];
        const r = parseLine<T>(line.toString('utf8'));
        if (r) yield r;
        end = i;
      }
      if (end > 0) partial.unshift(buf.subarray(0, end));
    }
    const r = parseLine<T>(Buffer.concat(partial).toString('utf8'));
    if (r) yield r;
  } finally {
    await fh.close();
  }
}
