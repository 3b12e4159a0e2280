/**
 * Which refs travel with a set of versions, shared by push and pull: a version's tag, the
 * version tags of its ancestors (their objects travel anyway, and numbering stays whole),
 * and each line's `latest`, which follows the newest version that travels on its line.
 */
import type { GitRepo } from './git.js';

const VERSION_TAG = /^refs\/tags\/(?:(.+)\/)?v([0-9]+)$/;

/** The line and number of a version tag ref (`refs/tags/v003`, `refs/tags/exp/v002`), or undefined. */
export function parseVersionTag(ref: string): { line: string; n: number } | undefined {
  const m = VERSION_TAG.exec(ref);
  return m ? { line: m[1] ?? 'main', n: Number(m[2]) } : undefined;
}

/** The `latest` ref of a line. */
export function lineHead(line: string): string {
  return line === 'main' ? 'refs/heads/latest' : `refs/heads/${line}/latest`;
}

/** Every commit reachable from `starts` through parents (the starts included). */
export async function ancestry(repo: GitRepo, starts: Iterable<string>): Promise<Set<string>> {
  const seen = new Set<string>();
  const stack = [...starts];
  while (stack.length) {
    const c = stack.pop()!;
    if (seen.has(c)) continue;
    seen.add(c);
    const parents = await repo.readCommit(c).then(
      (x) => x.parent,
      () => [] as string[],
    );
    for (const p of parents) if (!seen.has(p)) stack.push(p);
  }
  return seen;
}

/**
 * The refs (name -> value) that carry `commits` from a ref table: every version tag whose
 * commit is among `commits` or their ancestors, every other ref explicitly `named`, and for
 * each line that gains a version, its `latest`: the table's own head when that head travels,
 * else the highest-numbered travelling version of the line.
 */
export async function refsFor(
  repo: GitRepo,
  table: Map<string, string>,
  commits: Set<string>,
  named: Set<string>,
  peel: (oid: string) => Promise<string | undefined>,
): Promise<Map<string, string>> {
  const reach = await ancestry(repo, commits);
  const out = new Map<string, string>();
  const newest = new Map<string, { n: number; commit: string }>();
  for (const [ref, value] of table) {
    if (named.has(ref)) out.set(ref, value);
    const vt = parseVersionTag(ref);
    if (!vt) continue;
    const commit = await peel(value);
    if (!commit || !reach.has(commit)) continue;
    out.set(ref, value);
    const best = newest.get(vt.line);
    if (!best || vt.n > best.n) newest.set(vt.line, { n: vt.n, commit });
  }
  for (const [line, best] of newest) {
    const head = lineHead(line);
    if (out.has(head)) continue;
    const own = table.get(head);
    out.set(head, own && reach.has(own) ? own : best.commit);
  }
  return out;
}

/** Every ref of a local store (notes included), full name -> value. */
export async function localRefs(store: { repo: GitRepo }): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const values = store.repo.refValues();
  for (const r of [...values.keys()].sort()) {
    const v = values.get(r);
    if (v) out.set(r, v);
  }
  return out;
}

/** The full ref a user's name means in a table: exact, a tag, a head, `latest`. */
export function findRef(table: Map<string, string>, name: string): string | undefined {
  const candidates = name.startsWith('refs/') ? [name] : name === 'latest' ? ['refs/heads/latest'] : [`refs/tags/${name}`, `refs/heads/${name}`];
  return candidates.find((c) => table.has(c));
}
