import type { CommandModule } from 'yargs';
import { createTag, deleteTag, listTags } from '../../ops/tags.js';
import { MstoreError } from '../../lib/errors.js';
import { dim, handler, out, printJson, withStore } from '../ui/output.js';

interface Args {
  name?: string;
  rev?: string;
  delete: boolean;
  list: boolean;
  message?: string;
  json: boolean;
}

export const tagCommand: CommandModule<object, Args> = {
  command: 'tag [name] [rev]',
  describe: 'Name a version (annotated tag), delete a name, or list tags',
  builder: (y) =>
    y
      .positional('name', { type: 'string' })
      .positional('rev', { type: 'string', describe: 'default: latest' })
      .option('delete', { alias: 'd', type: 'boolean', default: false })
      .option('list', { alias: 'l', type: 'boolean', default: false })
      .option('message', { alias: 'm', type: 'string', requiresArg: true })
      .option('json', { type: 'boolean', default: false })
      .example('$0 tag production v003', 'name v003 "production"')
      .example('$0 tag -d production', 'remove the name')
      .example('$0 tag --list --json', 'all tags, versions included') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      if (a.list || !a.name) {
        const tags = await listTags(store);
        if (a.json) return printJson(tags);
        for (const t of tags) out(`${t.name.padEnd(24)} ${dim(t.commit.slice(0, 7))} ${t.isVersion ? '' : `-> ${t.version ?? '?'}`}`.trimEnd());
        return;
      }
      if (a.delete) {
        if (a.rev) throw new MstoreError('EUSAGE', 'tag -d takes only a name');
        await deleteTag(store, a.name);
        if (a.json) return printJson({ deleted: a.name });
        return out(`Deleted tag '${a.name}'`);
      }
      const t = await createTag(store, a.name, a.rev ?? 'latest', a.message);
      if (a.json) return printJson(t);
      out(`Tagged ${t.version ?? t.commit.slice(0, 12)} as '${t.name}'`);
    });
  }),
};
