/**
 * Where the merge reads its inputs and writes its outputs. The arithmetic works on byte ranges
 * of named files and writes each output file front to back, never on paths: the same code can
 * read a directory (`merge-lora`) or content read straight from a store, and hand its output to
 * a file or to a stream (issue 19: consolidate without scratch copies).
 */
import { open, stat } from 'node:fs/promises';
import { MstoreError } from '../lib/errors.js';

/** A file's bytes, read at any position. */
export interface ByteSource {
  /** What errors call it: a path, or a version's file. */
  readonly name: string;
  readonly size: number;
  /** Fills `into` with the bytes at `pos`; throws when the file ends first. */
  read(into: Uint8Array, pos: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * A file on disk, opened for each read (so nothing is left open when a merge fails half-way;
 * an open costs microseconds, a read is a block of rows or more).
 */
export class FileSource implements ByteSource {
  private constructor(
    readonly name: string,
    readonly size: number,
  ) {}

  /** The file at `path`; an error names it when it cannot be read. */
  static async open(path: string): Promise<FileSource> {
    const st = await stat(path).catch((e: Error) => {
      throw new MstoreError('EBADINPUT', `cannot read ${path}: ${e.message}`);
    });
    if (!st.isFile()) throw new MstoreError('EBADINPUT', `cannot read ${path}: not a file`);
    return new FileSource(path, st.size);
  }

  async read(into: Uint8Array, pos: number): Promise<void> {
    const fh = await open(this.name, 'r');
    try {
      let done = 0;
      while (done < into.length) {
        const { bytesRead } = await fh.read(into, done, into.length - done, pos + done);
        if (bytesRead === 0) throw new MstoreError('EBADINPUT', `${this.name}: file ended early (at byte ${pos + done} of ${this.size})`);
        done += bytesRead;
      }
    } finally {
      await fh.close();
    }
  }

  async close(): Promise<void> {}
}

/** Where one merged weight file goes, front to back: every byte exactly once, in order. */
export interface WeightOut {
  /** Takes `bytes` (or a copy) before it resolves: the merge reuses the buffer after. */
  write(bytes: Uint8Array): Promise<void>;
}
