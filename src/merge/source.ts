/**
 * Where the merge reads its inputs and writes its outputs. The arithmetic works on byte ranges
 * of named files and writes each output file front to back, never on paths: the same code can
 * read a directory (`merge-lora`) or content read straight from a store, and hand its output to
 * a file or to a stream (issue 19: consolidate without scratch copies).
 */
import { open, readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { MstoreError } from '../lib/errors.js';

/** A file's bytes, read at any position. */
export interface ByteSource {
  /** What errors call it: a path, or a version's file. */
  readonly name: string;
  readonly size: number;
  /** Fills `into` with the bytes at `pos`; throws when the file ends first. Reads may overlap. */
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

/** Bytes already in memory (a small file kept in a store's git objects). */
export class BufferSource implements ByteSource {
  readonly size: number;
  constructor(
    readonly name: string,
    private readonly data: Uint8Array,
  ) {
    this.size = data.length;
  }

  async read(into: Uint8Array, pos: number): Promise<void> {
    if (pos < 0 || pos + into.length > this.size) throw new MstoreError('EBADINPUT', `${this.name}: file ended early (at byte ${this.size} of ${pos + into.length} asked)`);
    into.set(this.data.subarray(pos, pos + into.length));
  }

  async close(): Promise<void> {}
}

/**
 * A model directory's files, wherever they are: a directory on disk (merge-lora) or a
 * directory of a stored version (consolidate). Paths are relative to it and '/'-separated.
 */
export interface ModelFiles {
  /** What errors call the directory. */
  readonly name: string;
  /** Every regular file and symlink below the directory, sorted by path. */
  list(): Promise<ModelEntry[]>;
  /** A regular file's bytes; an error names the file when it is not one. */
  source(rel: string): Promise<ByteSource>;
  /** A regular file as UTF-8 text. */
  text(rel: string): Promise<string>;
  /**
   * Where the symlink `rel` leads, every link on the way followed as a file system would: a
   * regular file inside the directory, a regular file outside it, or nothing (dangling, a
   * directory, a loop, or out of reach).
   */
  linkTarget(rel: string): Promise<'inside' | 'outside' | undefined>;
}

export interface ModelEntry {
  path: string;
  link: boolean;
}

/** Directories a model directory's walk never enters: a store's or a repository's own. */
const NOT_MODEL = new Set(['.mstore', '.git']);

/** The model directory `dir` on disk. */
export class DirFiles implements ModelFiles {
  constructor(readonly name: string) {}

  async list(): Promise<ModelEntry[]> {
    const out: ModelEntry[] = [];
    const walk = async (rel: string): Promise<void> => {
      let ents;
      try {
        ents = await readdir(path.join(this.name, rel), { withFileTypes: true });
      } catch (e) {
        throw new MstoreError('EBADINPUT', `cannot read directory ${path.join(this.name, rel)}: ${(e as Error).message}`);
      }
      for (const ent of ents) {
        const r = rel ? `${rel}/${ent.name}` : ent.name;
        if (ent.isDirectory()) {
          if (!(rel === '' && NOT_MODEL.has(ent.name))) await walk(r);
        } else if (ent.isFile() || ent.isSymbolicLink()) out.push({ path: r, link: ent.isSymbolicLink() });
      }
    };
    await walk('');
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  source(rel: string): Promise<ByteSource> {
    return FileSource.open(path.join(this.name, ...rel.split('/')));
  }

  async linkTarget(rel: string): Promise<'inside' | 'outside' | undefined> {
    try {
      const real = await realpath(path.join(this.name, ...rel.split('/')));
      if (!(await stat(real)).isFile()) return undefined;
      return real.startsWith(`${await realpath(this.name)}${path.sep}`) ? 'inside' : 'outside';
    } catch {
      return undefined;
    }
  }

  async text(rel: string): Promise<string> {
    const file = path.join(this.name, ...rel.split('/'));
    try {
      return await readFile(file, 'utf8');
    } catch (e) {
      throw new MstoreError('EBADINPUT', `${file}: ${(e as Error).message}`);
    }
  }
}
