/**
 * Proves files whole as their chunks arrive, so the verify before refs move need not read
 * them back. Chunks that arrive in a file's manifest order are hashed together, as one
 * run, on the hash worker (while this thread checks chunk ids and writes packs); at the
 * file's manifest the run is compared with it. A run that is exactly the manifest's chunks
 * and hashes to the file's oid proves the file; exactly its chunks but another digest is a
 * manifest that lies; anything else (a resumed transfer, chunks the receiver already had,
 * another client's upload in between) proves nothing, and verify reads that file back.
 */
import type { HashJob, ParallelHasher } from '../lib/hashing.js';

export type RunVerdict = 'whole' | 'mismatch' | 'unknown';

export class ReceiptHasher {
  private job: HashJob | undefined;
  private ids: string[] = [];

  constructor(private readonly hasher: ParallelHasher) {}

  /** Appends a chunk's bytes to the current run; resolves when the worker is done with them. */
  add(id: string, data: Buffer): Promise<void> {
    if (!(data.buffer instanceof SharedArrayBuffer)) {
      this.reset(); // only shared memory goes to the worker; this run can prove nothing now
      return Promise.resolve();
    }
    this.job ??= this.hasher.begin();
    this.ids.push(id);
    return this.job.update(data.buffer, data.byteOffset, data.length);
  }

  /** Ends the current run at the manifest of `oid` (its chunk ids in order) and starts a new one. */
  async end(oid: string, chunkIds: string[]): Promise<RunVerdict> {
    const job = this.job;
    const ids = this.ids;
    this.job = undefined;
    this.ids = [];
    if (!job) return 'unknown';
    const digest = await job.digest();
    if (ids.length !== chunkIds.length || ids.some((x, i) => x !== chunkIds[i])) return 'unknown';
    return digest === oid ? 'whole' : 'mismatch';
  }

  /** Drops the current run. */
  reset(): void {
    const job = this.job;
    this.job = undefined;
    this.ids = [];
    job?.digest().catch(() => undefined);
  }
}
