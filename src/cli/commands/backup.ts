import type { CommandModule } from 'yargs';
import { MstoreError } from '../../lib/errors.js';
import { addBackup, backup, BACKUP_TYPES, readBackupRecords, readRegistry, restoreFromBackup, type BackupType } from '../../ops/copy/backups.js';
import { dim, formatBytes, green, handler, out, printJson, progressBar, red, withStore } from '../ui/output.js';

interface Args {
  args: string[];
  type: string;
  reason?: string;
  json: boolean;
}

export const backupCommand: CommandModule<object, Args> = {
  command: 'backup [args..]',
  describe: 'Copy versions to a backup store and verify every byte there; add, list, restore backups',
  builder: (y) =>
    y
      .usage(
        '$0 backup add NAME PATH          register (and create) a backup store\n' +
          '$0 backup [NAME] [REV...]        back up versions (default: all) to NAME (default: the first added)\n' +
          '$0 backup list                   backup stores and the record of every backup\n' +
          '$0 backup restore NAME REV       bring a version back from a backup store',
      )
      .positional('args', { type: 'string', array: true, default: [] })
      .option('type', { type: 'string', default: 'manual', choices: [...BACKUP_TYPES], describe: 'recorded with the backup' })
      .option('reason', { type: 'string', requiresArg: true, describe: 'recorded with the backup' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 backup add disk2 /mnt/disk2/models-backup', 'a second disk as backup store')
      .example('$0 backup --type pre_consolidation --reason "before merging v004" v004', 'back up one version')
      .example('$0 backup restore disk2 v002', 'copy v002 back (verified)') as never,
  handler: handler(async (a) => {
    const [sub, ...rest] = a.args;
    await withStore(async (store) => {
      if (sub === 'add') {
        if (rest.length !== 2) throw new MstoreError('EUSAGE', 'usage: mstore backup add NAME PATH');
        const r = await addBackup(store, rest[0], rest[1]);
        if (a.json) return printJson(r);
        return out(`Backup store '${r.name}' ${r.created ? 'created' : 'registered'} at ${r.path}`);
      }
      if (sub === 'list') {
        if (rest.length) throw new MstoreError('EUSAGE', 'usage: mstore backup list');
        const reg = await readRegistry(store);
        const records = await readBackupRecords(store);
        if (a.json) return printJson({ stores: reg.stores, default: reg.default ?? null, backups: records });
        for (const [name, s] of Object.entries(reg.stores)) out(`${name}${name === reg.default ? ' (default)' : ''}  ${s.path}`);
        if (!Object.keys(reg.stores).length) out(dim("no backup store; add one with 'mstore backup add NAME PATH'"));
        for (const r of records) {
          const vs = r.versions.map((v) => v.name);
          out(
            `${r.time.replace('T', ' ').slice(0, 19)}  ${r.name}  ${r.type.padEnd(17)} ${r.verified ? green('verified') : red('UNVERIFIED')}  ` +
              `${vs.length <= 4 ? vs.join(',') : `${vs.length} versions`}  +${formatBytes(r.copied.bytes)}${r.reason ? `  ${dim(r.reason)}` : ''}`,
          );
        }
        return;
      }
      if (sub === 'restore') {
        if (rest.length !== 2) throw new MstoreError('EUSAGE', 'usage: mstore backup restore NAME REV');
        const r = await restoreFromBackup(store, rest[0], rest[1]);
        if (a.json) return printJson({ version: r.version, commit: r.commit, copied: { files: r.copied.files, chunks: r.copied.chunks, bytes: r.copied.bytes }, refs: r.copied.refs });
        return out(`Restored ${r.version} from backup '${rest[0]}' (${formatBytes(r.copied.bytes)} copied, every byte verified)`);
      }
      const reg = await readRegistry(store);
      const name = a.args[0] !== undefined && reg.stores[a.args[0]] ? a.args[0] : undefined;
      const revs = name ? a.args.slice(1) : a.args;
      const bar = progressBar('backup');
      let r;
      try {
        r = await backup(store, { name, type: a.type as BackupType, reason: a.reason, revs, onProgress: (p) => bar.update({ phase: 'store', ...p }) });
      } finally {
        bar.stop();
      }
      if (a.json) return printJson(r);
      out(
        `Backed up ${r.versions.length} version(s) to '${r.name}' (${r.path}): ${formatBytes(r.copied.bytes)} copied, ` +
          `${formatBytes(r.verifiedBytes)} re-read and verified there`,
      );
      if (r.kept.length) out(`Left as they are in '${r.name}' (they moved on there): ${r.kept.join(', ')}`);
    });
  }),
};
