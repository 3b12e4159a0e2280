/**
 * Received git objects held back until they can be written children first (pull, clone).
 *
 * The rule it keeps: a git object in the store has everything it links to (docs/format.md
 * §7.10). A pull walks a remote's history top-down (commit, then its tree, then the blobs) and
 * skips whatever the store already has; if it wrote objects in the order they arrived, a kill
 * -9 midway would leave a commit without its tree, and every later pull would skip that commit
 * and never fetch the rest. So objects wait here and `publish` writes each one after the
 * objects it links to, through the object sink; an object whose links are neither here nor
 * in the store (a tag fetched only to see where it points) is not written at all.
 *
 * Contents wait in a spill file under the store's tmp/ (memory holds ids and links only, so a
 * first clone of a long history does not grow the heap by its size). Single use per publish.
 */
import { open, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { GitType } from '../format/git-links.js';
import type { ObjectSink } from './object-sink.js';

interface Staged {
  type: GitType;
  offset: number;
  length: number;
  links: string[];
}

export class GitObjectStage {
  private readonly staged = new Map<string, Staged>();
  private size = 0;

  private constructor(
    private readonly file: string,
    private readonly fh: FileHandle,
  ) {}

  static async create(tmpDir: string): Promise<GitObjectStage> {
    const file = path.join(tmpDir, `git-stage-${process.pid}-${randomBytes(4).toString('hex')}`);
    return new GitObjectStage(file, await open(file, 'w+'));
  }

  has(id: string): boolean {
    return this.staged.has(id);
  }

  /** Holds `content` (an object of `type` named `id`, already hash-checked) that links to `links`. */
  async add(id: string, type: GitType, content: Uint8Array, links: string[]): Promise<void> {
    if (this.staged.has(id)) return;
    for (let done = 0; done < content.length; ) {
      const { bytesWritten } = await this.fh.write(content, done, content.length - done, this.size + done);
      done += bytesWritten;
    }
    this.staged.set(id, { type, offset: this.size, length: content.length, links });
    this.size += content.length;
  }

  /**
   * Writes every staged object whose links are all staged-and-written or `present` in the
   * store, each after what it links to; drops the others. Empties the stage. Returns the
   * number written.
   */
  async publish(sink: ObjectSink, present: (id: string) => Promise<boolean>): Promise<number> {
    const written = new Map<string, boolean>();
    let count = 0;
    for (const root of this.staged.keys()) {
      if (written.has(root)) continue;
      // Iterative post-order: a commit chain of thousands of versions is thousands deep.
      const stack: { id: string; next: number }[] = [{ id: root, next: 0 }];
      const open = new Set([root]);
      while (stack.length) {
        const top = stack[stack.length - 1];
        const s = this.staged.get(top.id)!;
        if (top.next < s.links.length) {
          const c = s.links[top.next++];
          if (this.staged.has(c) && !written.has(c) && !open.has(c)) {
            stack.push({ id: c, next: 0 });
            open.add(c);
          }
          continue;
        }
        stack.pop();
        open.delete(top.id);
        let complete = true;
        for (const c of s.links) {
          complete = this.staged.has(c) ? written.get(c) === true : await present(c);
          if (!complete) break;
        }
        if (complete) {
          const content = Buffer.allocUnsafe(s.length);
          const { bytesRead } = await this.fh.read(content, 0, s.length, s.offset);
          if (bytesRead !== s.length) throw new Error(`${this.file}: short read of staged git object ${top.id}`);
          await sink.addGitObject(s.type, content, top.id);
          count++;
        }
        written.set(top.id, complete);
      }
    }
    this.staged.clear();
    this.size = 0;
    await this.fh.truncate(0);
    return count;
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
    await rm(this.file, { force: true });
  }
}
