/**
 * A stored file's bytes as the merge reads them (merge/source.ts): at any position, straight
 * from the store's packs, every chunk re-hashed to its id as it is read, so the merge never
 * sees an unverified byte and needs no checkout into scratch space first. The last chunk read
 * is kept: the merge reads blocks of rows (1 MiB) from chunks of up to 8 MiB, and each chunk is
 * then read and hashed once, not once per block. Memory: one chunk. The manifest (which chunks,
 * in which order) is not re-hashed here, as no part read can be: a caller that needs the whole
 * file proven (consolidate) verifies the version first.
 */
import { MstoreError } from '../lib/errors.js';
import type { ContentReader } from '../repo/content.js';
import type { ManifestChunk } from '../repo/index-db.js';
import type { ByteSource } from '../merge/source.js';

export class StoredSource implements ByteSource {
  readonly size: number;
  private readonly chunks: ManifestChunk[];
  /** Where each chunk starts in the file. */
  private readonly starts: number[];
  private last: { index: number; data: Buffer } | undefined;

  /** The content `oid` of `reader`'s store; `name` (a version's path) names it in errors. */
  constructor(
    private readonly reader: ContentReader,
    readonly name: string,
    oid: string,
  ) {
    const m = reader.manifest(oid, name);
    this.size = m.size;
    this.chunks = m.chunks;
    this.starts = [];
    let at = 0;
    for (const c of m.chunks) {
      this.starts.push(at);
      at += c.length;
    }
  }

  /** The index of the chunk holding byte `pos` (binary search over the starts). */
  private chunkAt(pos: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid] <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  async read(into: Uint8Array, pos: number): Promise<void> {
    if (pos < 0 || pos + into.length > this.size) {
      throw new MstoreError('EBADINPUT', `${this.name}: bytes ${pos}-${pos + into.length} asked of a file of ${this.size}`);
    }
    let done = 0;
    for (let i = into.length ? this.chunkAt(pos) : this.chunks.length; done < into.length; i++) {
      if (this.last?.index !== i) this.last = { index: i, data: await this.reader.chunk(this.chunks[i], this.name) };
      const data = this.last.data;
      const from = pos + done - this.starts[i];
      const n = Math.min(data.length - from, into.length - done);
      into.set(data.subarray(from, from + n), done);
      done += n;
    }
  }

  async close(): Promise<void> {
    this.last = undefined;
  }
}
