import type { CommandModule } from 'yargs';
import { log } from '../store/inspect.js';
import { dim, formatBytes, handler, out, printJson, yellow, withStore } from './ui.js';

interface Args {
  rev?: string;
  n?: number;
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
        coerce: (v: number) => {
          if (!Number.isInteger(v) || v < 0) throw new Error('-n expects a non-negative integer');
          return v;
        },
      })
      .option('json', { type: 'boolean', default: false })
      .example('$0 log -n 5', 'the five newest versions')
      .example('$0 log merged/latest --json', 'the merged line as JSON') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      const entries = await log(store, { rev: a.rev, limit: a.n });
      if (a.json) return printJson(entries.map(({ meta, ...e }) => ({ ...e, meta })));
      for (const e of entries) {
        const date = e.date.replace('T', ' ').slice(0, 16);
        const tags = e.tags.length ? ` (${e.tags.join(', ')})` : '';
        const cols = [
          yellow((e.version ?? '-').padEnd(6)),
          dim(e.commit.slice(0, 7)),
          date,
          formatBytes(e.bytes).padStart(10),
          e.status ? `[${e.status}]` : '',
          e.description + tags,
          metricsSummary(e.metrics),
        ].filter(Boolean);
        out(cols.join('  '));
      }
    });
  }),
};
