import type { CommandModule } from 'yargs';
import { fsck } from '../../ops/integrity/fsck.js';
import { formatBytes, green, handler, out, printJson, red, withStore } from '../ui/output.js';

interface Args {
  repairIndex: boolean;
  json: boolean;
}

export const fsckCommand: CommandModule<object, Args> = {
  command: 'fsck',
  describe: 'Check the whole store: packs, index, git objects, refs; count unreachable data (exit 1 on damage)',
  builder: (y) =>
    y
      .option('repair-index', { type: 'boolean', default: false, describe: 'rebuild the index from the packs, and the record cache and ref table from git, first' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 fsck', 'check everything but the chunk bytes (verify --all reads those)')
      .example('$0 fsck --repair-index', 'rebuild a lost or damaged index from the packs') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      const r = await fsck(store, { repairIndex: a.repairIndex });
      if (a.json) printJson(r);
      else {
        if (r.repaired) {
          out(`index rebuilt from ${r.repaired.packsIndexed} pack(s)` + (r.repaired.damagedPacks.length ? red(`; ${r.repaired.damagedPacks.length} damaged pack(s) left out`) : ''));
        }
        out(`packs: ${r.packs.total} (${formatBytes(r.packs.bytes)} of entries); index: ${r.index.chunks} chunks, ${r.index.files} files`);
        out(`git: ${r.git.objects} objects; refs: ${r.refs.total}`);
        for (const n of r.notes) out(`note: ${n}`);
        for (const p of r.problems) out(red(`error: ${p}`));
        out(r.ok ? green('no problems found') : red(`${r.problems.length} problem(s) found`));
      }
      if (!r.ok) process.exitCode = 1;
    });
  }),
};
