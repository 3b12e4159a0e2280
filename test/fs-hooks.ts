/**
 * Test-only: a file that changes while mstore reads it, without timing races. Loaded into the
 * CLI with `NODE_OPTIONS=--import <dist/test/fs-hooks.js>` (see changingEnv in
 * hostile-snapshot.test.ts); inert unless MSTORE_TEST_CHANGE_SUFFIX is set. Never imported by
 * src/.
 *
 * For every read of a file whose real path ends with MSTORE_TEST_CHANGE_SUFFIX, through
 * fs.promises.readFile or FileHandle.prototype.read:
 * - a read returns at most MSTORE_TEST_READ_PIECE bytes (default 4096), so even a small file
 *   takes several reads and a torn read can be seen;
 * - after a read that returned data, the file is rewritten in place (same inode) with the
 *   bytes of the file MSTORE_TEST_CHANGE_TO:
 *   MSTORE_TEST_CHANGE_MODE=once   — once per process, after the first such read;
 *   MSTORE_TEST_CHANGE_MODE=always — after the first such read of every open, alternating
 *                                    between the original content and the new one.
 */
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { closeSync, ftruncateSync, openSync, readFileSync, readlinkSync, writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

const suffix = process.env.MSTORE_TEST_CHANGE_SUFFIX;
const changeTo = process.env.MSTORE_TEST_CHANGE_TO;
const mode = process.env.MSTORE_TEST_CHANGE_MODE === 'always' ? 'always' : 'once';
const piece = Number(process.env.MSTORE_TEST_READ_PIECE ?? 4096);

type ReadResult = { bytesRead: number; buffer: Buffer };
type ReadFn = (this: FileHandle, buffer: Buffer, offset?: number, length?: number, position?: number | null) => Promise<ReadResult>;

if (suffix && changeTo) {
  const require = createRequire(import.meta.url);
  const fsp = require('node:fs/promises') as typeof import('node:fs/promises');
  const probe = await fsp.open(process.execPath, 'r');
  const proto = Object.getPrototypeOf(probe) as { read: ReadFn };
  await probe.close();

  const next = readFileSync(changeTo);
  let original: Buffer | undefined;
  let flips = 0;
  let done = false;
  const targets = new WeakMap<object, string | null>();
  const changedOpens = new WeakSet<object>();

  const targetOf = (fh: FileHandle): string | null => {
    let t = targets.get(fh);
    if (t === undefined) {
      let real = '';
      try {
        real = readlinkSync(`/proc/self/fd/${fh.fd}`);
      } catch {
        real = '';
      }
      t = real.endsWith(suffix) ? real : null;
      targets.set(fh, t);
    }
    return t;
  };

  const rewrite = (abs: string): void => {
    original ??= readFileSync(abs);
    const data = mode === 'once' || flips % 2 === 0 ? next : original;
    flips++;
    const fd = openSync(abs, 'r+');
    try {
      writeSync(fd, data, 0, data.length, 0);
      ftruncateSync(fd, data.length);
    } finally {
      closeSync(fd);
    }
  };

  const afterRead = (fh: FileHandle, abs: string): void => {
    if (mode === 'once') {
      if (done) return;
      done = true;
    } else {
      if (changedOpens.has(fh)) return;
      changedOpens.add(fh);
    }
    rewrite(abs);
  };

  const origRead = proto.read;
  proto.read = async function (this: FileHandle, buffer: Buffer, offset?: number, length?: number, position?: number | null): Promise<ReadResult> {
    const abs = Buffer.isBuffer(buffer) ? targetOf(this) : null;
    if (!abs) return Reflect.apply(origRead, this, [buffer, offset, length, position]) as Promise<ReadResult>;
    const off = offset ?? 0;
    const len = Math.min(length ?? buffer.length - off, piece);
    const r = await origRead.call(this, buffer, off, len, position);
    if (r.bytesRead > 0) afterRead(this, abs);
    return r;
  };

  const origReadFile = fsp.readFile;
  const patchedReadFile = async (file: unknown, options?: unknown): Promise<Buffer | string> => {
    if (typeof file !== 'string' || !file.endsWith(suffix)) {
      return (origReadFile as (f: unknown, o?: unknown) => Promise<Buffer | string>)(file, options);
    }
    const fh = await fsp.open(file, 'r');
    try {
      const parts: Buffer[] = [];
      for (;;) {
        const buf = Buffer.alloc(piece);
        const { bytesRead } = await fh.read(buf, 0, piece, null);
        if (!bytesRead) break;
        parts.push(buf.subarray(0, bytesRead));
      }
      const all = Buffer.concat(parts);
      const enc = typeof options === 'string' ? (options as BufferEncoding) : (options as { encoding?: BufferEncoding } | undefined)?.encoding;
      return enc ? all.toString(enc) : all;
    } finally {
      await fh.close();
    }
  };
  (fsp as { readFile: unknown }).readFile = patchedReadFile;
  syncBuiltinESMExports();
}
