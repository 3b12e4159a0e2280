/**
 * `prune`: restic `forget` semantics over versions. Each line is a group; within it,
 * versions newest first, a version is kept if any rule keeps it:
 *   keep-last N     the N newest;
 *   keep-within D   created within D of the newest version of the line (not of "now");
 *   keep-tag P      a user tag matching the glob P points at it.
 * An empty policy is refused, and so is one whose every rule keeps nothing (`--keep-last 0`,
 * `--keep-within 0d`): restic reads that as empty too. The rest go through `rm` (backup first, ref history, grace).
 */
import picomatch from 'picomatch';
import { MstoreError } from '../../lib/errors.js';
import type { Store } from '../../repo/store.js';
import { readMeta } from '../../repo/versions.js';
import { refRoots } from '../../repo/reach.js';
import { planRemoval, removeLocked, type RemovalOptions, type RemovalResult } from './remove.js';

export interface PrunePolicy {
  keepLast?: number;
  /** A restic duration: `30d`, `2y5m7d3h` (years, months, days, hours; calendar arithmetic like restic). */
  keepWithin?: string;
  keepTags?: string[];
  /** Only this line (default: every line, each on its own). */
  line?: string;
}

export interface PruneDecision {
  version: string;
  commit: string;
  line: string;
  created: string;
  tags: string[];
  /** Why it is kept ("last 2", "within 30d", "tag prod"); empty for a removed version. */
  reasons: string[];
}

export interface PrunePlan {
  keep: PruneDecision[];
  remove: PruneDecision[];
}

export function checkPolicy(p: PrunePolicy): void {
  if (p.keepLast === undefined && p.keepWithin === undefined && !p.keepTags?.length) {
    throw new MstoreError('EUSAGE', 'refusing to prune with an empty policy: give --keep-last, --keep-within or --keep-tag');
  }
  if (p.keepWithin !== undefined) withinCutoff(new Date(0), p.keepWithin);
  if (p.keepLast !== undefined && (!Number.isInteger(p.keepLast) || p.keepLast < 0)) {
    throw new MstoreError('EUSAGE', `--keep-last expects a non-negative integer, got ${p.keepLast}`);
  }
  // restic reads a rule that keeps nothing (`--keep-last 0`, `--keep-within 0d`) as absent; a
  // policy of such rules alone is empty, and would remove every version, the newest included.
  const zero = [
    ...(p.keepLast === 0 ? ['--keep-last 0'] : []),
    ...(p.keepWithin !== undefined && isZeroDuration(p.keepWithin) ? [`--keep-within ${p.keepWithin}`] : []),
  ];
  const keeping = (p.keepLast ?? 0) > 0 || (p.keepWithin !== undefined && !isZeroDuration(p.keepWithin)) || !!p.keepTags?.length;
  if (!keeping) {
    throw new MstoreError(
      'EUSAGE',
      `refusing to prune: ${zero.join(' with ')} keeps nothing, an empty policy (restic removes nothing for it): give --keep-last N (N >= 1), a non-zero --keep-within or --keep-tag`,
      { what: zero.join(' ') },
    );
  }
}

/** A duration all of whose fields are zero (`0d`, `0y0m0d0h`): it keeps nothing. */
function isZeroDuration(duration: string): boolean {
  return /^[0ymdh]+$/.test(duration) && !/[1-9]/.test(duration);
}

/** The decision for every version of the selected lines. */
/**
 * restic's cutoff: latest.AddDate(-y, -m, -d).Add(-h hours), in UTC; a version is within
 * when created strictly after it.
 */
export function withinCutoff(latest: Date, duration: string): Date {
  const m = /^(?:([0-9]+)y)?(?:([0-9]+)m)?(?:([0-9]+)d)?(?:([0-9]+)h)?$/.exec(duration);
  if (!duration || !m) throw new MstoreError('EUSAGE', `--keep-within '${duration}' is not a duration like 30d or 2y5m7d3h`);
  const [y, mo, d, h] = m.slice(1).map((x) => Number(x ?? 0));
  const t = new Date(latest.getTime());
  t.setUTCFullYear(t.getUTCFullYear() - y, t.getUTCMonth() - mo, t.getUTCDate() - d);
  return new Date(t.getTime() - h * 3_600_000);
}

export async function planPrune(store: Store, policy: PrunePolicy): Promise<PrunePlan> {
  checkPolicy(policy);
  const repo = store.repo;
  const { roots } = await refRoots(repo);
  const byLine = new Map<string, PruneDecision[]>();
  for (const [commit, refs] of roots) {
    const meta = await readMeta(repo, commit).catch(() => undefined);
    if (!meta?.version || !refs.includes(`refs/tags/${meta.version}`)) continue;
    if (policy.line !== undefined && meta.line !== policy.line) continue;
    const tags = refs.filter((r) => r.startsWith('refs/tags/') && r !== `refs/tags/${meta.version}`).map((r) => r.slice('refs/tags/'.length));
    const d: PruneDecision = { version: meta.version, commit, line: meta.line, created: meta.created, tags, reasons: [] };
    byLine.set(meta.line, [...(byLine.get(meta.line) ?? []), d]);
  }
  if (policy.line !== undefined && !byLine.size) throw new MstoreError('ENOTFOUND', `line '${policy.line}' has no versions`, { what: policy.line });
  const matchers = (policy.keepTags ?? []).map((p) => ({ p, m: picomatch(p) }));
  const plan: PrunePlan = { keep: [], remove: [] };
  for (const versions of byLine.values()) {
    // Newest first; a tie in time falls back to the version number.
    versions.sort((a, b) => Date.parse(b.created) - Date.parse(a.created) || (a.version < b.version ? 1 : -1));
    const cutoff = policy.keepWithin !== undefined ? withinCutoff(new Date(versions[0].created), policy.keepWithin).getTime() : 0;
    versions.forEach((v, i) => {
      if (policy.keepLast !== undefined && i < policy.keepLast) v.reasons.push(`last ${policy.keepLast}`);
      if (policy.keepWithin !== undefined && Date.parse(v.created) > cutoff) v.reasons.push(`within ${policy.keepWithin}`);
      for (const { p, m } of matchers) if (v.tags.some((t) => m(t))) v.reasons.push(`tag ${p}`);
      (v.reasons.length ? plan.keep : plan.remove).push(v);
    });
  }
  return plan;
}

/**
 * `prune --execute`: the policy is applied under the store lock, to the versions the store holds
 * once a killed writer's last operation is finished (a prune killed between its ref moves is
 * completed by the next writer, and its rerun finds nothing left to remove).
 */
export async function executePrune(
  store: Store,
  policy: PrunePolicy,
  opts: Omit<RemovalOptions, 'reason'>,
): Promise<{ prune: PrunePlan; removal: RemovalResult | undefined }> {
  checkPolicy(policy);
  return store.withLock('prune', async () => {
    const prune = await planPrune(store, policy);
    if (!prune.remove.length) return { prune, removal: undefined };
    const plan = await planRemoval(store, prune.remove.map((v) => v.commit));
    return { prune, removal: await removeLocked(store, plan, { ...opts, reason: 'prune' }) };
  });
}
