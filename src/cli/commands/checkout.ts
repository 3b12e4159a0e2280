import type { CommandModule } from 'yargs';
import { checkout } from '../../ops/checkout.js';
import { formatBytes, handler, out, printJson, progressBar, withStore } from '../ui/output.js';

interface Args {
  rev: string;
  paths: string[];
  to?: string;
  force: boolean;
  json: boolean;
}

export const checkoutCommand: CommandModule<object, Args> = {
  command: 'checkout <rev> [paths..]',
  describe: 'Materialise a version (or some of its files) into the workspace or --to DIR',
  builder: (y) =>
    y
      .positional('rev', { type: 'string', demandOption: true })
      .positional('paths', { type: 'string', array: true, default: [], describe: 'version paths, directories or globs' })
      .option('to', { type: 'string', requiresArg: true, describe: 'write into this directory instead of the workspace' })
      .option('force', { type: 'boolean', default: false, describe: 'overwrite modified or untracked files' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 checkout v001 --to current_model/', 'restore v001 into current_model/')
      .example("$0 checkout latest 'adapter/*'", 'only the adapter files of latest') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      const bar = progressBar('checkout');
      let r;
      try {
        r = await checkout(store, { rev: a.rev, cwd: process.cwd(), to: a.to, patterns: a.paths, force: a.force, onProgress: bar.update });
      } finally {
        bar.stop();
      }
      if (a.json) return printJson(r);
      out(
        `${r.version ?? r.commit.slice(0, 12)} -> ${r.target}: ${r.written.length} written (${formatBytes(r.bytes)}), ` +
          `${r.unchanged.length} already up to date${r.removed.length ? `, ${r.removed.length} removed` : ''}`,
      );
    });
  }),
};
