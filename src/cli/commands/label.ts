import type { CommandModule } from 'yargs';
import { setLabels, readLabels, type Labels } from '../../ops/labels.js';
import { resolveRev, readMeta } from '../../repo/versions.js';
import { MstoreError } from '../../lib/errors.js';
import { handler, out, printJson, statusBadge, withStore } from '../ui/output.js';

interface Args {
  rev: string;
  pairs: string[];
  unset?: string[];
  json: boolean;
}

export const labelCommand: CommandModule<object, Args> = {
  command: 'label <rev> [pairs..]',
  describe: 'Annotate a version after the fact (status, notes, eval results): git notes, history kept',
  builder: (y) =>
    y
      .positional('rev', { type: 'string', demandOption: true })
      .positional('pairs', { type: 'string', array: true, default: [], describe: 'KEY=VALUE labels to set' })
      .option('unset', { type: 'string', array: true, requiresArg: true, describe: 'remove the label KEY' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 label v003 status=completed eval_gsm8k=0.71', 'set two labels')
      .example('$0 label v003 --unset eval_gsm8k', 'remove one')
      .example('$0 label v003', 'show the labels of v003')
      .example("git --git-dir=.mstore/git notes show 'v003^{commit}'", 'what git sees') as never,
  handler: handler(async (a) => {
    const set: Labels = {};
    for (const p of a.pairs) {
      const eq = p.indexOf('=');
      if (eq <= 0) throw new MstoreError('EUSAGE', `label expects KEY=VALUE, got '${p}'`);
      set[p.slice(0, eq)] = p.slice(eq + 1);
    }
    await withStore(async (store) => {
      if (!a.pairs.length && !a.unset?.length) {
        const commit = await resolveRev(store.repo, a.rev);
        const meta = await readMeta(store.repo, commit);
        const labels = await readLabels(store, commit);
        if (a.json) return printJson({ version: meta?.version, commit, labels });
        for (const [k, v] of Object.entries(labels)) out(`${k} = ${k === 'status' ? statusBadge(v) : v}`);
        return;
      }
      const r = await setLabels(store, a.rev, set, a.unset ?? []);
      if (a.json) return printJson(r);
      const name = r.version ?? r.commit.slice(0, 12);
      if (!r.changed) return out(`${name}: labels unchanged`);
      out(`${name}: ${Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(' ') || '(no labels)'}`);
    });
  }),
};
