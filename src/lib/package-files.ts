/** Files mstore ships beside its code: hooks/ (installed into new stores) and workers/. */
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, chmod } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root (holding hooks/ and workers/), found from dist/bundle/ or dist/src/store/. */
export function packageRoot(): string {
  let d = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const pj = path.join(d, 'package.json');
    if (existsSync(pj) && (JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'mstore') return d;
    d = path.dirname(d);
  }
  throw new Error('cannot find the mstore package root (hooks/, workers/)');
}

/** The hooks a new store gets (docs/hooks.md). */
export const DEFAULT_HOOKS = ['consolidate', 'post-receive'];

/** Copies the default hooks into a store's hooks/ directory (executable). */
export async function installDefaultHooks(hooksDir: string): Promise<void> {
  const root = packageRoot();
  for (const name of DEFAULT_HOOKS) {
    const dest = path.join(hooksDir, name);
    await copyFile(path.join(root, 'hooks', name), dest);
    await chmod(dest, 0o755);
  }
}
