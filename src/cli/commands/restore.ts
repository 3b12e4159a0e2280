import type { CommandModule } from 'yargs';
import { restoreRef } from '../../ops/retention/remove.js';
import { handler, out, printJson, withStore } from '../ui/output.js';

interface Args {
  ref: string;
  json: boolean;
}

export const restoreCommand: CommandModule<object, Args> = {
  command: 'restore <ref>',
  describe: 'Bring back a removed version or tag from the ref history (until gc frees its data)',
  builder: (y) =>
    y
      .positional('ref', { type: 'string', demandOption: true, describe: 'a version (v002), a tag, or a full ref name' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 restore v002', 'undo rm v002 (its tags and line head come back too)')
      .example('$0 reflog v002', 'see what happened to it') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      const r = await restoreRef(store, a.ref);
      if (a.json) return printJson(r);
      for (const e of r.entries) out(`Restored ${e.ref.replace(/^refs\/(tags|heads)\//, '')} -> ${e.new!.slice(0, 12)}`);
    });
  }),
};
