/**
 * Worker thread that computes whole-file sha256 digests over shared memory, so the
 * main thread can hash chunks (and write packs) while this core hashes the file.
 * Protocol: {op:'begin',id} | {op:'update',id,seq,buf,off,len} -> {id,seq} |
 * {op:'end',id,seq} -> {id,seq,digest}. Updates are applied in arrival order.
 */
import { parentPort } from 'node:worker_threads';
import { createHash, type Hash } from 'node:crypto';

type Msg =
  | { op: 'begin'; id: number }
  | { op: 'update'; id: number; seq: number; buf: SharedArrayBuffer; off: number; len: number }
  | { op: 'end'; id: number; seq: number };

const port = parentPort;
if (!port) throw new Error('hash-worker must run in a worker thread');
const jobs = new Map<number, Hash>();

port.on('message', (m: Msg) => {
  if (m.op === 'begin') {
    jobs.set(m.id, createHash('sha256'));
  } else if (m.op === 'update') {
    jobs.get(m.id)!.update(new Uint8Array(m.buf, m.off, m.len));
    port.postMessage({ id: m.id, seq: m.seq });
  } else {
    const h = jobs.get(m.id)!;
    jobs.delete(m.id);
    port.postMessage({ id: m.id, seq: m.seq, digest: h.digest('hex') });
  }
});
