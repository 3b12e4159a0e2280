/**
 * The store's notion of "now". `MSTORE_NOW` (an ISO 8601 date or unix seconds) pins it,
 * so retention and grace periods can be tested against a clock that moves on demand.
 */
import { MstoreError } from './errors.js';

export function now(): Date {
  const pinned = process.env.MSTORE_NOW;
  if (pinned === undefined || pinned === '') return new Date();
  const d = /^[0-9]+(\.[0-9]+)?$/.test(pinned) ? new Date(Number(pinned) * 1000) : new Date(pinned);
  if (Number.isNaN(d.getTime())) throw new MstoreError('EUSAGE', `MSTORE_NOW='${pinned}' is not a date (ISO 8601 or unix seconds)`);
  return d;
}

const UNIT_MS: Record<string, number> = {
  y: 365 * 86_400_000,
  m: 30 * 86_400_000,
  w: 7 * 86_400_000,
  d: 86_400_000,
  h: 3_600_000,
  min: 60_000,
  s: 1000,
};

/**
 * A duration like restic's: `30d`, `2y5m7d3h`, `90min`, `0`. y = 365 days, m = 30 days
 * (months, as in restic), w = 7 days, min and s for short grace periods in tests.
 */
export function parseDuration(text: string, what = 'duration'): number {
  if (text === '0') return 0;
  const re = /([0-9]+)(min|y|m|w|d|h|s)/y;
  let ms = 0;
  let pos = 0;
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) throw new MstoreError('EUSAGE', `${what} '${text}' is not a duration (like 30d, 2y5m7d3h, 12h, 90min)`);
    ms += Number(m[1]) * UNIT_MS[m[2]];
    pos = re.lastIndex;
  }
  if (!text) throw new MstoreError('EUSAGE', `${what} is empty`);
  return ms;
}
