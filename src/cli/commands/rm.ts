import type { CommandModule } from 'yargs';
import { executeRemoval, planRemoval } from '../../ops/retention/remove.js';
import { dim, formatBytes, handler, out, printJson, red, warn, withStore } from '../ui/output.js';

interface Args {
  revs: string[];
  confirm: boolean;
  backup: boolean;
  to?: string;
  json: boolean;
}

export const rmCommand: CommandModule<object, Args> = {
  command: 'rm <revs..>',
  describe: 'Remove versions (after a verified pre-deletion backup); without --confirm, only show what would go',
  builder: (y) =>
    y
      .positional('revs', { type: 'string', array: true, demandOption: true })
      .option('confirm', { type: 'boolean', default: false, describe: 'really remove (default: show the plan)' })
      .option('backup', { type: 'boolean', default: true, describe: 'back up first (--no-backup: delete without one, loudly)' })
      .option('to', { type: 'string', requiresArg: true, describe: 'the backup store to use (default: the first added)' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 rm v002', 'show what removing v002 would do')
      .example('$0 rm v002 v003 --confirm', 'back up, verify, then remove them')
      .example('$0 restore v002', 'undo, within the gc grace period') as never,
  handler: handler(async (a) => {
    await withStore(async (store) => {
      if (!a.confirm) {
        const plan = await planRemoval(store, a.revs);
        if (a.json) return printJson({ dryRun: true, ...plan });
        for (const v of plan.versions) out(`would remove ${v.name} (${v.commit.slice(0, 12)})`);
        for (const m of plan.moves) out(dim(`  ${m.ref}: ${m.value === null ? 'deleted' : `-> ${m.value.slice(0, 12)}`}`));
        out(dim('nothing removed; add --confirm to remove (a verified backup is made first)'));
        return;
      }
      if (!a.backup) warn('--no-backup: removing WITHOUT a backup; only the ref history and the gc grace period can bring these versions back');
      const r = await executeRemoval(store, a.revs, { reason: 'rm', noBackup: !a.backup, backupName: a.to });
      if (a.json) return printJson(r);
      if (r.backup) out(`Backed up to '${r.backup.name}' and verified (${formatBytes(r.backup.verifiedBytes)} re-read there)`);
      for (const v of r.plan.versions) out(`Removed ${v.name} (${v.commit.slice(0, 12)}); 'mstore restore ${v.name}' brings it back until gc`);
      if (!r.backup) out(red('no backup was made'));
    });
  }),
};
