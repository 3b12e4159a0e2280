/**
 * Git objects as bytes: the framing git hashes (docs/format.md §16.3.2) and the links one
 * object holds to others (§7.8: tree entries, a commit's tree and parents, a tag's object).
 * Pure: bytes in, ids out; a malformed object is an Error naming the problem, which callers
 * turn into their own MstoreError. What a bundle further refuses (gitlinks, unsafe names,
 * order) is bundle.ts's.
 */
import { createHash } from 'node:crypto';

export type GitType = 'commit' | 'tree' | 'blob' | 'tag';
const GIT_TYPES = new Set(['commit', 'tree', 'blob', 'tag']);

export function isGitType(t: string): t is GitType {
  return GIT_TYPES.has(t);
}

export function sha1Hex(data: Uint8Array): string {
  return createHash('sha1').update(data).digest('hex');
}

/** `<type> <len>\0<content>`: the bytes git hashes to name an object. */
export function wrapObject(type: string, content: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(`${type} ${content.length}\0`), content]);
}

/** Splits git's framing; the problem as a string when the bytes are not a framed object. */
export function unwrapObject(data: Buffer): { type: GitType; content: Buffer } | string {
  const nul = data.indexOf(0);
  if (nul < 0 || nul > 32) return 'no git object header';
  const m = /^(commit|tree|blob|tag) (0|[1-9][0-9]*)$/.exec(data.subarray(0, nul).toString('latin1'));
  if (!m) return 'bad git object header';
  const content = data.subarray(nul + 1);
  if (Number(m[2]) !== content.length) return `header says ${m[2]} bytes, the object has ${content.length}`;
  return { type: m[1] as GitType, content };
}

/** The mode of a tree entry that is a gitlink (a submodule's commit, in another repository). */
export const GITLINK_MODE = '160000';
const MODE_TYPES: Record<string, GitType> = { '40000': 'tree', '100644': 'blob', '100755': 'blob', '120000': 'blob', [GITLINK_MODE]: 'commit' };

export interface Link {
  oid: string;
  type: GitType;
  /** How the linking object names it, for messages: `tree`, `parent`, `object`, or a tree entry name. */
  via: string;
  /** The mode of a tree entry. */
  mode?: string;
}

/** The links of an object's content (§7.8), in the order the object holds them. Throws an Error naming what is malformed. */
export function objectLinks(type: GitType, content: Buffer): Link[] {
  const links: Link[] = [];
  if (type === 'blob') return links;
  if (type === 'tree') {
    for (let o = 0; o < content.length; ) {
      const sp = content.indexOf(0x20, o);
      const nul = sp < 0 ? -1 : content.indexOf(0, sp);
      if (sp < 0 || nul < 0 || nul + 21 > content.length) throw new Error('truncated tree entry');
      const mode = content.subarray(o, sp).toString('latin1');
      const name = content.subarray(sp + 1, nul).toString('utf8');
      const linked = MODE_TYPES[mode];
      if (!linked) throw new Error(`tree entry '${name}' has mode ${mode}, not one of git's (${Object.keys(MODE_TYPES).join(', ')})`);
      links.push({ oid: content.subarray(nul + 1, nul + 21).toString('hex'), type: linked, via: name, mode });
      o = nul + 21;
    }
    return links;
  }
  const end = content.indexOf('\n\n');
  const head = content.subarray(0, end < 0 ? content.length : end).toString('utf8').split('\n');
  if (type === 'commit') {
    const tree = /^tree ([0-9a-f]{40})$/.exec(head[0] ?? '');
    if (!tree) throw new Error('commit does not start with a tree line');
    links.push({ oid: tree[1], type: 'tree', via: 'tree' });
    let i = 1;
    for (; i < head.length; i++) {
      const p = /^parent ([0-9a-f]{40})$/.exec(head[i]);
      if (!p) break;
      links.push({ oid: p[1], type: 'commit', via: 'parent' });
    }
    if (!/^author .* <.*> [0-9]+ [+-][0-9]{4}$/.test(head[i] ?? '') || !/^committer .* <.*> [0-9]+ [+-][0-9]{4}$/.test(head[i + 1] ?? '')) throw new Error('commit lacks well-formed author and committer lines after its parents');
    return links;
  }
  const obj = /^object ([0-9a-f]{40})$/.exec(head[0] ?? '');
  const t = /^type (commit|tree|blob|tag)$/.exec(head[1] ?? '');
  if (!obj || !t) throw new Error('tag does not start with object and type lines');
  links.push({ oid: obj[1], type: t[1] as GitType, via: 'object' });
  return links;
}

/** The links of a framed object (`<type> <len>\0<content>`). Throws an Error naming what is malformed. */
export function framedObjectLinks(data: Buffer): Link[] {
  const o = unwrapObject(data);
  if (typeof o === 'string') throw new Error(o);
  return objectLinks(o.type, o.content);
}
