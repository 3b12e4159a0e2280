/** Walking the git object graph of a store's version records (links read by format/git-links.ts). */
import { gitObjects } from './git-objects.js';
import { GITLINK_MODE, objectLinks, parseCommit, parseTreeFrom, type ParsedTree } from '../format/git-links.js';
import { MstoreError, errorLine } from '../lib/errors.js';

export type GitType = 'blob' | 'tree' | 'commit' | 'tag';

/** Tree paths whose last-read tree reachableObjects keeps for the next version's. */
const MAX_PLACES = 256;

export interface WalkedObject {
  oid: string;
  type: GitType;
}

/**
 * Every object reachable from `starts` (tags, commits with their parents, trees, blobs),
 * each once, in dependency order: an object comes after everything it points at, so
 * writing them in this order never leaves a written object pointing at a missing one.
 */
export async function reachableObjects(gitdir: string, starts: string[], haves: Iterable<string> = []): Promise<WalkedObject[]> {
  const objects = gitObjects(gitdir);
  const order: WalkedObject[] = [];
  // `haves`: objects whose whole closure is known to be present elsewhere; not walked, not listed.
  const state = new Map<string, 'open' | 'done'>([...haves].map((h) => [h, 'done'] as const));
  // Iterative post-order DFS: histories can be thousands of commits deep. `place`: a tree's
  // path in its version ('' for the root), so that each tree is parsed reusing the last one
  // read there (parseTreeFrom: consecutive versions' trees share most of their bytes).
  const stack: { oid: string; place?: string; children?: string[]; type?: GitType }[] = starts.map((oid) => ({ oid }));
  const lastTrees = new Map<string, ParsedTree>();
  while (stack.length) {
    const top = stack[stack.length - 1];
    if (!top.children) {
      if (state.has(top.oid)) {
        stack.pop();
        continue;
      }
      state.set(top.oid, 'open');
      const o = await objects.get(top.oid);
      top.type = o.type;
      top.children = [];
      const children = top.children;
      const add = (oid: string, type: GitType, via: string, place?: string): void => {
        if (state.has(oid)) return;
        // A blob a tree names links to nothing: its presence is all the walk needs (whoever
        // reads it, to send or to verify, re-hashes it then), so it is listed without being read.
        if (o.type === 'tree' && type === 'blob') {
          if (!objects.has(oid)) throw new MstoreError('EMISSING', `git object ${oid} (blob ${via}) is missing`, { what: oid });
          state.set(oid, 'done');
          order.push({ oid, type: 'blob' });
          return;
        }
        children.push(oid);
        stack.push({ oid, place });
      };
      try {
        if (o.type === 'tree') {
          const place = top.place ?? '';
          const t = parseTreeFrom(o.content, lastTrees.get(place));
          if (lastTrees.size >= MAX_PLACES && !lastTrees.has(place)) lastTrees.clear();
          lastTrees.set(place, t);
          for (const e of t.entries) if (e.mode !== GITLINK_MODE) add(e.oid, e.type, e.name, e.type === 'tree' ? `${place}${e.name}/` : undefined);
        } else {
          for (const l of objectLinks(o.type, o.content)) if (l.mode !== GITLINK_MODE) add(l.oid, l.type, l.via, o.type === 'commit' && l.via === 'tree' ? '' : undefined);
        }
      } catch (e) {
        if (e instanceof MstoreError) throw e;
        throw new MstoreError('ECORRUPT', `git object ${top.oid} (${o.type}) is malformed: ${errorLine(e)}`, { what: top.oid });
      }
      continue;
    }
    stack.pop();
    if (state.get(top.oid) === 'done') continue;
    state.set(top.oid, 'done');
    order.push({ oid: top.oid, type: top.type! });
  }
  return order;
}

/** The objects a parsed git object points at: a commit's tree and parents, a tree's entries (not submodules), a tag's target. */
export function pointsAt(o: { type: string; object: unknown }): string[] {
  if (o.type === 'commit') {
    const c = o.object as { tree: string; parent: string[] };
    return [c.tree, ...c.parent];
  }
  if (o.type === 'tree') return (o.object as { oid: string; type: string }[]).filter((e) => e.type !== 'commit').map((e) => e.oid);
  if (o.type === 'tag') return [(o.object as { object: string }).object];
  return [];
}

/** Whether the object is present (not read, not checked). */
export async function hasObject(gitdir: string, oid: string): Promise<boolean> {
  return gitObjects(gitdir).has(oid);
}

/**
 * Whether commit `oid` descends from commit `ancestor` (a strict descendant: false when they
 * are the same), walking parents breadth first. A commit that cannot be read counts as not
 * descending (callers then refuse the move as not a fast-forward).
 */
export async function descendsFrom(gitdir: string, oid: string, ancestor: string): Promise<boolean> {
  if (oid === ancestor) return false;
  const objects = gitObjects(gitdir);
  const queue = [oid];
  const seen = new Set(queue);
  for (let i = 0; i < queue.length; i++) {
    let parents: string[];
    try {
      const o = await objects.get(queue[i], 'commit');
      if (o.type !== 'commit') return false;
      parents = parseCommit(o.content).parent;
    } catch {
      return false;
    }
    for (const p of parents) {
      if (p === ancestor) return true;
      if (!seen.has(p)) {
        seen.add(p);
        queue.push(p);
      }
    }
  }
  return false;
}
