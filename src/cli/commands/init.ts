import type { CommandModule } from 'yargs';
import path from 'node:path';
import { Store } from '../../repo/store.js';
import { handler, out, printJson } from '../ui/output.js';

interface Args {
  dir: string;
  bare: boolean;
  json: boolean;
}

export const initCommand: CommandModule<object, Args> = {
  command: 'init [dir]',
  describe: 'Create a store: DIR/.mstore/, or a bare store at DIR with --bare',
  builder: (y) =>
    y
      .positional('dir', { type: 'string', default: '.', describe: 'workspace (or bare store) directory' })
      .option('bare', { type: 'boolean', default: false, describe: 'a store without a workspace (for serving)' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 init', 'make the current directory a workspace')
      .example('$0 init --bare /srv/models', 'a bare store for `mstore serve`') as never,
  handler: handler(async (a) => {
    const store = await Store.init(path.resolve(a.dir), { bare: a.bare });
    await store.close();
    if (a.json) printJson({ store: store.dir, workspace: store.workspace ?? null, bare: a.bare });
    else out(`Initialized empty ${a.bare ? 'bare ' : ''}mstore store in ${store.dir}`);
  }),
};
