import type { CommandModule } from 'yargs';
import { checkPolicy, executePrune, planPrune, type PrunePolicy } from '../../ops/retention/prune.js';
import { dim, green, handler, out, printJson, red, warn, withStore } from '../ui/output.js';

interface Args {
  keepLast?: number;
  keepWithin?: string;
  keepTag?: string[];
  line?: string;
  execute: boolean;
  backup: boolean;
  to?: string;
  json: boolean;
}

export const pruneCommand: CommandModule<object, Args> = {
  command: 'prune',
  describe: 'Remove versions by a retention policy (restic forget rules); shows the plan unless --execute',
  builder: (y) =>
    y
      .option('keep-last', { type: 'number', requiresArg: true, describe: 'keep the N newest versions of each line' })
      .option('keep-within', { type: 'string', requiresArg: true, describe: 'keep versions made within DURATION (1y2m3d4h) of the newest' })
      .option('keep-tag', { type: 'string', array: true, requiresArg: true, describe: 'keep versions with a tag matching PATTERN (glob)' })
      .option('line', { type: 'string', requiresArg: true, describe: 'only this line (default: every line, each on its own)' })
      .option('execute', { type: 'boolean', default: false, describe: 'really remove (after a verified backup)' })
      .option('backup', { type: 'boolean', default: true, describe: '--no-backup: remove without a backup, loudly' })
      .option('to', { type: 'string', requiresArg: true, describe: 'the backup store to use' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 prune --keep-last 5 --keep-within 30d', 'show what a 30-day policy would remove')
      .example("$0 prune --keep-last 3 --keep-tag 'prod*' --execute", 'apply it') as never,
  handler: handler(async (a) => {
    const policy: PrunePolicy = { keepLast: a.keepLast, keepWithin: a.keepWithin, keepTags: a.keepTag, line: a.line };
    await withStore(async (store) => {
      if (!a.execute) {
        const plan = await planPrune(store, policy);
        if (a.json) return printJson({ dryRun: true, ...plan });
        for (const v of plan.keep) out(`keep   ${v.version.padEnd(16)} ${v.created.slice(0, 16)}  ${dim(v.reasons.join(', '))}`);
        for (const v of plan.remove) out(red(`remove ${v.version.padEnd(16)} ${v.created.slice(0, 16)}`));
        out(dim(`${plan.remove.length} to remove, ${plan.keep.length} to keep; nothing removed without --execute`));
        return;
      }
      checkPolicy(policy); // before the warning: a refused policy prints one line
      if (!a.backup) warn('--no-backup: pruning WITHOUT a backup');
      const { prune: plan, removal: r } = await executePrune(store, policy, { noBackup: !a.backup, backupName: a.to, message: 'prune' });
      if (!r) {
        if (a.json) return printJson({ dryRun: false, ...plan, removed: [] });
        return out(green('nothing to remove'));
      }
      if (a.json) return printJson({ dryRun: false, ...plan, backup: r.backup ?? null, entries: r.entries });
      if (r.backup) out(`Backed up ${r.backup.versions.length} version(s) to '${r.backup.name}' and verified`);
      for (const v of plan.remove) out(`Removed ${v.version}`);
    });
  }),
};
