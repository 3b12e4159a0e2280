/**
 * Where a checkout may write (docs/format.md §10.1). A `--to` destination is resolved as the
 * kernel will resolve it — every symlink of the destination or of its existing ancestors
 * followed, a dangling one included — and refused (EUSAGE: exit 2, nothing written) when it is
 * a store or inside one: this one's, another workspace's `.mstore`, a bare store. A store below
 * the destination that a file of the version would be written into is refused the same way.
 * `--to ''` is a usage error; `--to` naming the workspace root (through any symlink) is the
 * in-place checkout. Reads only; never writes.
 */
import { lstat, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import { MstoreError } from '../lib/errors.js';
import { STORE_DIR, type Store } from '../repo/store.js';

/**
 * The path `abs` names once every symlink in it is followed, component by component (so a
 * `..` after a symlink goes up from where the link points, as in the kernel); components from
 * the first missing one on are kept as written.
 */
export async function resolveReal(abs: string): Promise<string> {
  const queue = abs.split('/');
  let cur = '/';
  let hops = 0;
  while (queue.length) {
    const c = queue.shift()!;
    if (c === '' || c === '.') continue;
    if (c === '..') {
      cur = path.dirname(cur);
      continue;
    }
    const next = path.join(cur, c);
    const st = await lstat(next).catch(() => undefined);
    if (st?.isSymbolicLink()) {
      if (++hops > 40) throw new MstoreError('EUSAGE', `${abs}: too many levels of symbolic links`, { what: abs });
      const t = await readlink(next);
      if (path.isAbsolute(t)) cur = '/';
      queue.unshift(...t.split('/'));
      continue;
    }
    cur = next;
  }
  return cur;
}

/** A store directory: named `.mstore`, or holding config.json, git/ and packs/ (a bare store). */
async function isStoreDir(dir: string): Promise<boolean> {
  if (path.basename(dir) === STORE_DIR) return true;
  const [c, g, p] = await Promise.all(['config.json', 'git', 'packs'].map((n) => stat(path.join(dir, n)).catch(() => undefined)));
  return !!c?.isFile() && !!g?.isDirectory() && !!p?.isDirectory();
}

/** The store that the real path `real` is, or is inside; undefined when none. */
async function enclosingStore(real: string): Promise<string | undefined> {
  for (let d = real; ; d = path.dirname(d)) {
    if (await isStoreDir(d)) return d;
    if (path.dirname(d) === d) return undefined;
  }
}

export interface CheckoutTarget {
  /** The directory written into (absolute; for --to, with every symlink resolved). */
  target: string;
  /** In place: the workspace, with its stat cache, removals and the store lock. */
  intoWorkspace: boolean;
}

/** Where `checkout` writes, given its `--to` (undefined: the workspace); see CheckoutOptions.allowInsideStore. */
export async function checkoutTarget(store: Store, cwd: string, to: string | undefined, allowInsideStore = false): Promise<CheckoutTarget> {
  if (to === undefined) return { target: store.requireWorkspace('checkout without --to'), intoWorkspace: true };
  if (to === '') {
    throw new MstoreError('EUSAGE', "--to '' names no directory (leave --to out to check out into the workspace)", { what: '--to' });
  }
  const real = await resolveReal(path.resolve(cwd, to));
  if (store.workspace && real === (await resolveReal(store.workspace))) return { target: store.workspace, intoWorkspace: true };
  const inside = allowInsideStore ? undefined : await enclosingStore(real);
  if (inside) {
    const how = inside === real ? 'is' : 'is inside';
    throw new MstoreError('EUSAGE', `refusing to check out into ${to}: it ${how} the store ${inside}`, { what: to, where: inside });
  }
  return { target: real, intoWorkspace: false };
}

/**
 * Refuses (EUSAGE) when a directory on the way from `target` to one of `rels` (paths of the
 * version) is a store: its files would be overwritten. Missing directories end the walk
 * (they will be created empty), and so do files and symlinks (replaced, never followed).
 */
export async function refuseStoresBelow(target: string, rels: string[]): Promise<void> {
  const seen = new Set<string>();
  for (const rel of rels) {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (seen.has(d)) continue;
      seen.add(d);
      const abs = path.join(target, d);
      const st = await lstat(abs).catch(() => undefined);
      if (!st?.isDirectory()) break;
      if (await isStoreDir(abs)) {
        throw new MstoreError('EUSAGE', `refusing to check out ${rel}: ${abs} is a store`, { what: rel, where: abs });
      }
    }
  }
}
