import type { CommandModule } from 'yargs';
import { status } from '../../ops/status.js';
import { green, handler, out, printJson, red, withStore } from '../ui/output.js';

interface Args {
  json: boolean;
}

export const statusCommand: CommandModule<object, Args> = {
  command: 'status',
  describe: 'Show added, modified and deleted files against latest',
  builder: (y) => y.option('json', { type: 'boolean', default: false }).example('$0 status', 'what the next commit would record') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      const r = await status(store);
      if (a.json) return printJson(r);
      out(r.version ? `Against ${r.version} (latest)` : 'No versions yet');
      const n = r.added.length + r.modified.length + r.deleted.length;
      if (!n) return out('Nothing changed.');
      for (const p of r.added) out(green(`  added:    ${p}`));
      for (const p of r.modified) out(red(`  modified: ${p}`));
      for (const p of r.deleted) out(red(`  deleted:  ${p}`));
    });
  }),
};
