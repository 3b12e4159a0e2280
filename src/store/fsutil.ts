/** Small filesystem helpers for the publish-after-fsync rule. */
import { open, rename, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';

/** fsync a directory so a rename inside it survives power loss. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export function tmpName(finalPath: string): string {
  return `${finalPath}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Write to a temporary name, fsync, rename over the target: readers see old or new, never partial. */
export async function atomicWriteFile(file: string, data: Uint8Array | string, mode = 0o666): Promise<void> {
  const tmp = tmpName(file);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.datasync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}
