/** `mstore reflog`: the ref history, newest first (read from the end of reflog.jsonl). */
import type { CommandModule } from 'yargs';
import { movesRef, refLogWithOutcome, type RefLogEntry } from '../../repo/reflog.js';
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
      // A move recorded but never made (its command failed or was killed before its refs moved)
      // is shown as such: the ref history records intent first (docs/format.md §13).
      const entries: (RefLogEntry & { happened?: false })[] = [];
      for await (const { happened, ...e } of refLogWithOutcome(store)) {
        if (entries.length === a.n) break;
        if (want(e)) entries.push(happened ? e : { ...e, happened: false });
      }
      if (a.json) return printJson(entries);
      for (const e of entries) {
        const ref = e.ref.replace(/^refs\/(tags|heads)\//, '');
        const never = e.happened === false ? '  (did not happen)' : '';
        out(`${e.time.replace('T', ' ').slice(0, 19)}  ${ref.padEnd(16)} ${short(e.old)} -> ${short(e.new)}  ${e.reason}${never}${e.message ? dim(`  ${e.message}`) : ''}`);
      }
    });
  }),
};
