/**
 * The contract every hostile input is held to (test/hostile*.test.ts): the command exits 1 or
 * 2 (never by a signal), prints exactly one line on stderr that starts `mstore: ` and names
 * the thing, no stack trace, and the store is byte-for-byte what it was (every file under
 * .mstore but lmdb's reader-lock table and the store lock), fsck is clean and every earlier
 * version still checks out byte for byte.
 */
import * as assert from 'uvu/assert';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { cleanup, mstore, tmpDir, treeDigest, type RunResult } from './helpers.js';

/** Files that change on every read: lmdb's reader table and the store's lock. */
const VOLATILE = new Set(['index/lock.mdb', 'lock']);

/**
 * `r` is a refusal: exit `code`, one line on stderr (a usage error may add `(see mstore
 * --help)`) that starts `mstore: ` and matches `re`, no stack trace, no signal. Returns the line.
 */
export function expectRefusal(r: RunResult, code: number, re: RegExp, what: string): string {
  const shown = r.stderr.length > 600 ? `${r.stderr.slice(0, 200)} [...] ${r.stderr.slice(-400)}` : r.stderr;
  assert.ok(r.code >= 0, `${what}: killed by a signal (stderr: ${shown})`);
  assert.is(r.code, code, `${what}: exit code (stderr: ${shown})`);
  const lines = r.stderr.replace(/\n$/, '').split('\n');
  const extra = lines.slice(1).filter((l) => l !== '(see mstore --help)');
  assert.equal(extra, [], `${what}: one line on stderr, got:\n${shown}`);
  assert.match(lines[0], /^mstore: /, `${what}: starts with 'mstore: '`);
  assert.not.match(r.stderr, /\n\s+at |node:internal|\.js:\d+:\d+/, `${what}: no stack trace`);
  assert.match(lines[0], re, `${what}: message`);
  return lines[0];
}

/**
 * A digest of the whole store directory: every path with its type, mode and content (links:
 * their target), except the VOLATILE files. Two equal digests mean nothing was written.
 */
export function storeBytes(ws: string): string {
  const root = path.join(ws, '.mstore');
  const h = createHash('sha256');
  const walk = (rel: string): void => {
    for (const name of readdirSync(path.join(root, rel)).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      if (VOLATILE.has(p)) continue;
      const full = path.join(root, p);
      const st = lstatSync(full);
      if (st.isDirectory()) {
        h.update(`dir ${p}\n`);
        walk(p);
      } else if (st.isSymbolicLink()) {
        h.update(`link ${p} ${readlinkSync(full)}\n`);
      } else {
        h.update(`file ${p} ${(st.mode & 0o7777).toString(8)} ${createHash('sha256').update(readFileSync(full)).digest('hex')}\n`);
      }
    }
  };
  walk('');
  return h.digest('hex');
}

/** What each version holds: rev -> (path -> sha256:mode), read by checking it out elsewhere. */
export function versionContents(ws: string, revs: string[]): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  for (const rev of revs) {
    const dir = tmpDir('mstore-hostile-co-');
    try {
      const r = mstore(ws, ['checkout', rev, '--to', path.join(dir, 'out')]);
      assert.is(r.code, 0, `checkout ${rev}: ${r.stderr}`);
      out.set(rev, treeDigest(path.join(dir, 'out')));
    } finally {
      cleanup(dir);
    }
  }
  return out;
}

/** fsck is clean and every version in `before` checks out to exactly the same bytes. */
export function assertIntact(ws: string, before: Map<string, Map<string, string>>, what: string): void {
  const f = mstore(ws, ['fsck']);
  assert.is(f.code, 0, `${what}: fsck after it: ${f.stdout}${f.stderr}`);
  const now = versionContents(ws, [...before.keys()]);
  for (const [rev, files] of before) assert.equal(now.get(rev), files, `${what}: ${rev} checks out as before`);
}

/**
 * Runs `act` (a hostile input) and holds it to the contract: `act` returns the refusal, which
 * must match `code`/`re`; the store's bytes are unchanged; fsck clean; `revs` intact.
 */
export function refusedUnchanged(ws: string, revs: string[], what: string, code: number, re: RegExp, act: () => RunResult): string {
  const before = versionContents(ws, revs);
  const bytes = storeBytes(ws);
  const line = expectRefusal(act(), code, re, what);
  assert.is(storeBytes(ws), bytes, `${what}: the store's files are unchanged`);
  assertIntact(ws, before, what);
  return line;
}
