/** Where mstore's package is: the files it ships beside its code (hooks/, workers/, package.json). */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root (holding hooks/ and workers/), found from dist/bundle/ (and its chunks/) or dist/src/lib/. */
export function packageRoot(): string {
  let d = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const pj = path.join(d, 'package.json');
    if (existsSync(pj) && (JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'mstore') return d;
    d = path.dirname(d);
  }
  throw new Error('cannot find the mstore package root (hooks/, workers/)');
}
