/**
 * Git objects serialised and deflated here, then handed to isomorphic-git as a loose object
 * (writeObject, format 'deflated'), which writes it through git-fs.ts as before. The bytes are
 * those isomorphic-git's writeTree, writeCommit and writeTag produce (its GitTree, GitCommit
 * and GitAnnotatedTag rendering, mirrored below); only the deflate differs in how, not in what:
 * isomorphic-git deflates with a web CompressionStream read through `new Response(...)`, and
 * the first `Response` loads node's fetch stack (undici, http2, tls), tens of milliseconds of
 * every command that writes a version. zlib's deflateSync gives the same zlib stream.
 */
import { deflateSync } from 'node:zlib';
import { gitFs, isoGit } from './git-fs.js';
import { hashObject } from './git-objects.js';

export interface TreeItem {
  mode: string;
  path: string;
  oid: string;
}

export interface GitSignature {
  name: string;
  email: string;
  timestamp: number;
  timezoneOffset: number;
}

/** Code units from U+D800 up: only these can make UTF-16 order differ from code point order. */
const NEEDS_CODE_POINT_ORDER = /[\ud800-\uffff]/;

function isLoneSurrogate(s: string, i: number, unit: number): boolean {
  if (unit < 0xd800 || unit > 0xdfff) return false;
  if (unit < 0xdc00) {
    const next = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
    return next < 0xdc00 || next > 0xdfff;
  }
  const prev = i > 0 ? s.charCodeAt(i - 1) : 0;
  return prev < 0xd800 || prev > 0xdbff;
}

/** Strings by code point (the order of their UTF-8 bytes, git's), a lone surrogate as U+FFFD: isomorphic-git's compareStrings. */
export function compareStrings(a: string, b: string): number {
  if (!NEEDS_CODE_POINT_ORDER.test(a) && !NEEDS_CODE_POINT_ORDER.test(b)) return -(a < b) || +(a > b);
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (isLoneSurrogate(a, i, x)) x = 0xfffd;
      if (isLoneSurrogate(b, i, y)) y = 0xfffd;
      if (x === y) continue;
      if (x >= 0xd800 && y >= 0xd800) {
        x += x >= 0xe000 ? -0x800 : 0x2000;
        y += y >= 0xe000 ? -0x800 : 0x2000;
      }
      return x < y ? -1 : 1;
    }
  }
  return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
}

/** isomorphic-git's limitModeToAllowed. */
function allowedMode(mode: string): string {
  if (/^0?4.*/.test(mode)) return '040000';
  if (/^1006.*/.test(mode)) return '100644';
  if (/^1007.*/.test(mode)) return '100755';
  if (/^120.*/.test(mode)) return '120000';
  if (/^160.*/.test(mode)) return '160000';
  throw new Error(`Could not understand file mode: ${mode}`);
}

/** A tree's content as isomorphic-git's GitTree renders it: entries in git's order (a directory's name as if it ended in `/`). */
export function treeContent(items: TreeItem[]): Buffer {
  const entries = items.map((e) => ({ mode: allowedMode(e.mode), path: e.path, oid: e.oid }));
  entries.sort((a, b) => compareStrings(a.path, b.path));
  const key = (e: { mode: string; path: string }): string => (e.mode === '040000' ? `${e.path}/` : e.path);
  entries.sort((a, b) => compareStrings(key(a), key(b)));
  return Buffer.concat(entries.flatMap((e) => [Buffer.from(`${e.mode.replace(/^0/, '')} ${e.path}\0`, 'utf8'), Buffer.from(e.oid, 'hex')]));
}

/** isomorphic-git's formatTimezoneOffset: minutes west of UTC (getTimezoneOffset's sign) as `+hhmm`/`-hhmm`; -0 is `-0000`. */
function timezone(offset: number): string {
  const n = offset === 0 ? offset : -offset;
  const sign = Math.sign(n) || (Object.is(n, -0) ? -1 : 1);
  const abs = Math.abs(offset);
  const hours = Math.floor(abs / 60);
  const minutes = abs - hours * 60;
  return `${sign === -1 ? '-' : '+'}${String(hours).padStart(2, '0')}${String(minutes).padStart(2, '0')}`;
}

const signature = (s: GitSignature): string => `${s.name} <${s.email}> ${s.timestamp} ${timezone(s.timezoneOffset)}`;

/** isomorphic-git's normalizeNewlines: no CR, no leading newlines, exactly one at the end. */
function normalizeNewlines(s: string): string {
  return `${s.replace(/\r/g, '').replace(/^\n+/, '').replace(/\n+$/, '')}\n`;
}

/** A commit's content as isomorphic-git's GitCommit renders it (no signature). */
export function commitContent(c: { tree: string; parents: string[]; author: GitSignature; committer?: GitSignature; message: string }): Buffer {
  let headers = `tree ${c.tree}\n`;
  for (const p of c.parents) headers += `parent ${p}\n`;
  headers += `author ${signature(c.author)}\ncommitter ${signature(c.committer ?? c.author)}\n`;
  return Buffer.from(`${headers}\n${normalizeNewlines(c.message)}`, 'utf8');
}

/** An annotated tag's content as isomorphic-git's GitAnnotatedTag renders it (no signature). */
export function tagContent(t: { object: string; type: string; tag: string; tagger: GitSignature; message: string }): Buffer {
  return Buffer.from(`object ${t.object}\ntype ${t.type}\ntag ${t.tag}\ntagger ${signature(t.tagger)}\n\n${t.message}\n`, 'utf8');
}

/** Writes an object of `type` with `content` as a loose object of the repository at `gitdir`; returns its id. */
export async function writeLooseObject(gitdir: string, type: 'blob' | 'tree' | 'commit' | 'tag', content: Uint8Array): Promise<string> {
  const oid = hashObject(type, content);
  const deflated = deflateSync(Buffer.concat([Buffer.from(`${type} ${content.length}\0`), content]));
  await (await isoGit()).writeObject({ fs: gitFs, gitdir, type, object: deflated, format: 'deflated', oid });
  return oid;
}
