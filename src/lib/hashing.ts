/**
 * sha256 through node:crypto (~1450 MB/s with SHA-NI, docs/format.md §3; pure-JS hashes are
 * 10x slower and stay off bulk paths). `ParallelHasher` moves one running digest per
 * file onto a second core so two sha256 passes (file oid and chunk ids) cost one.
 */
import { createHash } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { lazyModule } from './lazy-module.js';

const workerThreads = lazyModule<typeof import('node:worker_threads')>('node:worker_threads');

export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

interface Pending {
  resolve: (digest: string | undefined) => void;
  reject: (e: Error) => void;
}

/**
 * The worker's file: beside this module (dist/src/lib/), or one level up when this code
 * sits in a chunk of the split bundle (dist/bundle/chunks/ -> dist/bundle/hash-worker.js).
 */
function workerUrl(): URL {
  const here = new URL('./hash-worker.js', import.meta.url);
  return existsSync(here) ? here : new URL('../hash-worker.js', import.meta.url);
}

/**
 * Content of at most this many bytes is hashed on the calling thread: starting the worker
 * costs ~0.1 s of CPU, hashing 4 MiB ~3 ms. A checkout or verify of small files starts none.
 */
export const INLINE_HASH_BYTES = 4 * 1024 * 1024;

/** A digest computed on this thread as the bytes arrive (each update is done when it returns). */
function inlineJob(): HashJob {
  const h = createHash('sha256');
  return {
    update: (buf, off, len) => {
      h.update(new Uint8Array(buf, off, len));
      return Promise.resolve();
    },
    digest: () => Promise.resolve(h.digest('hex')),
  };
}

/** One worker thread; each `begin()` opens an independent digest job. */
export class ParallelHasher {
  private worker: Worker | undefined;
  private nextId = 1;
  private nextSeq = 1;
  private pending = new Map<number, Pending>();
  private failure: Error | undefined;

  private ensure(): Worker {
    if (this.worker) return this.worker;
    const w = new (workerThreads().Worker)(workerUrl());
    w.on('message', (m: { seq: number; digest?: string }) => {
      const p = this.pending.get(m.seq);
      this.pending.delete(m.seq);
      p?.resolve(m.digest);
    });
    w.on('error', (e) => this.fail(e));
    w.on('exit', (code) => {
      if (this.pending.size) this.fail(new Error(`hash worker exited with code ${code}`));
    });
    this.worker = w;
    return w;
  }

  private fail(e: Error): void {
    this.failure = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  private request(msg: object, seq: number): Promise<string | undefined> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.ensure().postMessage(msg);
    });
  }

  /** Starts the worker thread now (~0.1 s of startup) so it overlaps with other work. */
  warm(): void {
    this.ensure();
  }

  /** A digest job; `size`, the bytes it will get when known, at most INLINE_HASH_BYTES: hashed on this thread. */
  begin(size?: number): HashJob {
    if (size !== undefined && size <= INLINE_HASH_BYTES) return inlineJob();
    const id = this.nextId++;
    this.ensure().postMessage({ op: 'begin', id });
    return {
      update: (buf, off, len) => {
        const seq = this.nextSeq++;
        return this.request({ op: 'update', id, seq, buf, off, len }, seq).then(() => undefined);
      },
      digest: () => {
        const seq = this.nextSeq++;
        return this.request({ op: 'end', id, seq }, seq).then((d) => d!);
      },
    };
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }
}

export interface HashJob {
  /** Hash `len` bytes of shared memory at `off`; resolves once the worker is done with them. */
  update(buf: SharedArrayBuffer, off: number, len: number): Promise<void>;
  digest(): Promise<string>;
}
