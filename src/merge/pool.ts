/**
 * Runs the kernel on worker threads: a block's rows are shared out between the threads, which read
 * and write the block through SharedArrayBuffers (no copies). The worker code is the kernel's
 * own source text (kernel.ts keeps `createKernel` self-contained), evaluated in the worker, so
 * it works the same from dist/src and from the single-file bundle.
 */
import { Worker } from 'node:worker_threads';
import { createKernel, type Kernel, type KernelOptions, type RowJob, type RowResult } from './kernel.js';

interface Pending {
  resolve: (r: RowResult) => void;
  reject: (e: Error) => void;
}

interface WorkerReply {
  id: number;
  bad?: number;
  firstBad?: number;
  error?: string;
}

// Each thread takes the block's rows a grain at a time from a shared counter until none are
// left, so a thread that shares its core with another (the hash worker, this thread) takes fewer
// rows instead of holding the block up: a fixed half each left the other thread idle.
const workerSource = (options: KernelOptions): string => `'use strict';
const { parentPort } = require('node:worker_threads');
const kernel = (${createKernel.toString()})(${JSON.stringify(options)});
parentPort.on('message', (m) => {
  try {
    let bad = 0;
    let firstBad = -1;
    for (;;) {
      const start = Atomics.add(m.next, 0, m.grain);
      if (start >= m.job.rows) break;
      const r = kernel.mergeRows(m.job, start, Math.min(start + m.grain, m.job.rows));
      bad += r.bad;
      if (r.firstBad >= 0 && (firstBad < 0 || r.firstBad < firstBad)) firstBad = r.firstBad;
    }
    parentPort.postMessage({ id: m.id, bad, firstBad });
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String((e && e.stack) || e) });
  }
});
`;

/** Grains of rows per thread per block: enough that a slowed thread's share moves to the others. */
const GRAINS_PER_THREAD = 8;

/** Below this many elements a block runs on the calling thread: a message round trip costs more. */
const MIN_PARALLEL_ELEMENTS = 1 << 15;

function isShared(a: ArrayBufferView | null): boolean {
  return a === null || a.buffer instanceof SharedArrayBuffer;
}

export class KernelPool {
  readonly threads: number;
  readonly local: Kernel;
  private workers: Worker[] = [];
  private pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: Error | undefined;

  /** `threads` worker threads; 0 runs everything on the calling thread. Every thread runs the kernel made with `options`. */
  constructor(threads: number, options: KernelOptions = {}) {
    this.threads = Math.max(0, Math.floor(threads));
    this.local = createKernel(options);
    const source = workerSource(options);
    for (let t = 0; t < this.threads; t++) {
      const w = new Worker(source, { eval: true });
      w.on('message', (m: WorkerReply) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (!p) return;
        if (m.error !== undefined) p.reject(new Error(`merge worker failed: ${m.error.split('\n')[0]}`));
        else p.resolve({ bad: m.bad ?? 0, firstBad: m.firstBad ?? -1 });
      });
      w.on('error', (e) => this.fail(e));
      w.on('exit', (code) => {
        if (this.pending.size) this.fail(new Error(`merge worker exited with code ${code}`));
      });
      this.workers.push(w);
    }
  }

  private fail(e: Error): void {
    this.failure = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  private post(w: Worker, job: RowJob, next: Int32Array, grain: number): Promise<RowResult> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ id, job, next, grain });
    });
  }

  /** All rows of the block; blocks on non-shared memory or small blocks run here. */
  async run(job: RowJob): Promise<RowResult> {
    const parallel =
      this.workers.length > 0 &&
      job.rows * job.cols >= MIN_PARALLEL_ELEMENTS &&
      [job.src, job.dst, job.P, job.Q, job.mag].every(isShared);
    if (!parallel) return this.local.mergeRows(job, 0, job.rows);
    const grain = Math.max(1, Math.ceil(job.rows / (this.workers.length * GRAINS_PER_THREAD)));
    const next = new Int32Array(new SharedArrayBuffer(4));
    const threads = this.workers.slice(0, Math.ceil(job.rows / grain));
    const results = await Promise.all(threads.map((w) => this.post(w, job, next, grain)));
    let bad = 0;
    let firstBad = -1;
    for (const r of results) {
      bad += r.bad;
      if (r.firstBad >= 0 && (firstBad < 0 || r.firstBad < firstBad)) firstBad = r.firstBad;
    }
    return { bad, firstBad };
  }

  async close(): Promise<void> {
    const ws = this.workers;
    this.workers = [];
    await Promise.all(ws.map((w) => w.terminate()));
  }
}
