/** `mstore reflog`: the ref history, newest first (read from the end of reflog.jsonl). */
import type { CommandModule } from 'yargs';
import { movesRef, refLogFromEnd, type RefLogEntry } from '../../repo/reflog.js';
import { dim, handler, out, printJson, withStore, wholeNumber } from '../ui/output.js';

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
      .option('n', {
        type: 'number',
        requiresArg: true,
        describe: 'at most N entries',
        coerce: wholeNumber('-n'),
      })
      .option('json', { type: 'boolean', default: false })
      .example('$0 reflog', 'everything that moved')
      .example('$0 reflog v002 --json', 'what happened to v002') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      // Newest first, read from the end: with -n only the tail of the history is read.
      const want = a.ref ? movesRef(a.ref) : () => true;
      const entries: RefLogEntry[] = [];
      for await (const e of refLogFromEnd(store)) {
        if (entries.length === a.n) break;
        if (want(e)) entries.push(e);
      }
      if (a.json) return printJson(entries);
      for (const e of entries) {
        const ref = e.ref.replace(/^refs\/(tags|heads)\//, '');
        out(`${e.time.replace('T', ' ').slice(0, 19)}  ${ref.padEnd(16)} ${short(e.old)} -> ${short(e.new)}  ${e.reason}${e.message ? dim(`  ${e.message}`) : ''}`);
      }
    });
  }),
};
