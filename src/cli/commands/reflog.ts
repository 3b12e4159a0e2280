import type { CommandModule } from 'yargs';
import { entriesFor, readRefLog } from '../../repo/reflog.js';
import { dim, handler, out, printJson, withStore } from '../ui/output.js';

interface Args {
  ref?: string;
  n?: number;
  json: boolean;
}

const short = (v: string | null): string => (v ? v.slice(0, 12) : '(none)'.padEnd(12));

export const reflogCommand: CommandModule<object, Args> = {
  command: 'reflog [ref]',
  describe: 'The history of every ref and tag move (newest first): time, old, new, reason',
  builder: (y) =>
    y
      .positional('ref', { type: 'string', describe: 'one ref: v002, latest, a tag or a full ref name (default: all)' })
      .option('n', { type: 'number', requiresArg: true, describe: 'at most N entries' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 reflog', 'everything that moved')
      .example('$0 reflog v002 --json', 'what happened to v002') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      const all = await readRefLog(store);
      let entries = a.ref ? entriesFor(all, a.ref) : [...all].reverse();
      if (a.n !== undefined) entries = entries.slice(0, a.n);
      if (a.json) return printJson(entries);
      for (const e of entries) {
        const ref = e.ref.replace(/^refs\/(tags|heads)\//, '');
        out(`${e.time.replace('T', ' ').slice(0, 19)}  ${ref.padEnd(16)} ${short(e.old)} -> ${short(e.new)}  ${e.reason}${e.message ? dim(`  ${e.message}`) : ''}`);
      }
    });
  }),
};
