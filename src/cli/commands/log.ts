/** `mstore log`: the versions, newest first (sizes, tags, status, metric columns). */
import type { CommandModule } from 'yargs';
import { log, type LogEntry } from '../../ops/inspect.js';
import { dim, failLine, formatBytes, handler, out, printJson, statusBadge, yellow, withStore, wholeNumber } from '../ui/output.js';
import { STATUSES } from '../../repo/versions.js';
import { MstoreError } from '../../lib/errors.js';

interface Args {
  rev?: string;
  n?: number;
  metrics?: string;
  status?: string;
  json: boolean;
}

/** A few metrics, compactly: numbers to 4 significant digits. */
export function metricsSummary(m: Record<string, unknown>, max = 3): string {
  return Object.entries(m)
    .filter(([, v]) => typeof v === 'number' || typeof v === 'string')
    .slice(0, max)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? Number(v.toPrecision(4)) : v}`)
    .join(' ');
}

export const logCommand: CommandModule<object, Args> = {
  command: 'log [rev]',
  describe: 'List versions, newest first',
  builder: (y) =>
    y
      .positional('rev', { type: 'string', describe: 'start here (default: latest)' })
      .option('n', {
        type: 'number',
        describe: 'show at most N versions',
        coerce: wholeNumber('-n'),
      })
      .option('metrics', { type: 'string', requiresArg: true, describe: 'metric columns, comma-separated (NAME,NAME)' })
      .option('status', { type: 'string', requiresArg: true, describe: `only versions with this status (${STATUSES.join(', ')})` })
      .option('json', { type: 'boolean', default: false })
      .example('$0 log -n 5', 'the five newest versions')
      .example('$0 log --metrics loss,accuracy --status completed', 'completed versions with two metric columns')
      .example('$0 log merged/latest --json', 'the merged line as JSON') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      if (a.status !== undefined && !(STATUSES as readonly string[]).includes(a.status)) {
        throw new MstoreError('EUSAGE', `invalid status '${a.status}' (one of ${STATUSES.join(', ')})`);
      }
      const columns = a.metrics?.split(',').map((m) => m.trim()).filter(Boolean);
      const { entries, problems } = await log(store, { rev: a.rev, limit: a.n, status: a.status });
      // The versions that could be read are listed; each one that could not is one line on stderr (exit 1).
      try {
        if (a.json) return printJson(entries.map(({ meta, ...e }) => ({ ...e, meta })));
        printLog(entries, columns);
      } finally {
        for (const p of problems) failLine(p);
      }
    });
  }),
};

function printLog(entries: LogEntry[], columns: string[] | undefined): void {
  const fmt = (v: unknown): string => (typeof v === 'number' ? String(Number(v.toPrecision(4))) : v === undefined ? '-' : String(v));
  if (columns?.length) out(dim(['version', 'commit ', 'date'.padEnd(16), ...columns.map((c) => c.padStart(10))].join('  ')));
  for (const e of entries) {
    const date = e.date.replace('T', ' ').slice(0, 16);
    const tags = e.tags.length ? ` (${e.tags.join(', ')})` : '';
    const cols = columns?.length
      ? [yellow((e.version ?? '-').padEnd(7)), dim(e.commit.slice(0, 7)), date, ...columns.map((c) => fmt(e.metrics[c]).padStart(10)), e.status ? statusBadge(e.status) : '']
      : [
          yellow((e.version ?? '-').padEnd(6)),
          dim(e.commit.slice(0, 7)),
          date,
          formatBytes(e.bytes).padStart(10),
          e.status ? statusBadge(e.status) : '',
          e.description + tags,
          metricsSummary(e.metrics),
        ];
    out(cols.filter(Boolean).join('  '));
  }
}
