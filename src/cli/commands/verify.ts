import type { CommandModule } from 'yargs';
import { verify, type VerifyMode } from '../../ops/integrity/verify.js';
import { MstoreError } from '../../lib/errors.js';
import { formatBytes, formatDuration, formatRate, green, handler, out, printJson, progressBar, red, withStore } from '../ui/output.js';

interface Args {
  revs?: string[];
  all: boolean;
  quick: boolean;
  sample?: number;
  seed?: number;
  chunkIds: boolean;
  json: boolean;
}

export const verifyCommand: CommandModule<object, Args> = {
  command: 'verify [revs..]',
  describe: 'Prove versions can be checked out: re-hash every byte of every file (exit 1 on damage)',
  builder: (y) =>
    y
      .positional('revs', { type: 'string', array: true, describe: 'versions to check (default: every version a ref reaches)' })
      .option('all', { type: 'boolean', default: false, describe: 'every version any ref or tag reaches' })
      .option('quick', { type: 'boolean', default: false, describe: 'presence and sizes only; read no chunk data' })
      .option('sample', { type: 'number', requiresArg: true, describe: 're-read a random PERCENT of the chunks' })
      .option('seed', { type: 'number', requiresArg: true, describe: 'with --sample: choose the chunks by this seed (the same seed reads the same chunks)' })
      .option('chunk-ids', { type: 'boolean', default: false, describe: 'also re-hash every chunk to its id (a second pass; slower)' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 verify --all', 'read and re-hash every byte of every version')
      .example('$0 verify v003 --quick', 'check that everything v003 needs is present')
      .example('$0 verify --all --sample 10', 're-read a random 10% of the chunks') as never,
  handler: handler(async (a) => {
    if (a.all && a.revs?.length) throw new MstoreError('EUSAGE', 'give revisions or --all, not both');
    if (a.quick && a.sample !== undefined) throw new MstoreError('EUSAGE', '--quick and --sample exclude each other');
    if (a.seed !== undefined && a.sample === undefined) throw new MstoreError('EUSAGE', '--seed goes with --sample');
    if (a.seed !== undefined && !Number.isSafeInteger(a.seed)) throw new MstoreError('EUSAGE', `--seed expects an integer, got ${a.seed}`);
    const mode: VerifyMode = a.quick ? 'quick' : a.sample !== undefined ? 'sample' : 'full';
    await withStore(async (store) => {
      const bar = progressBar('verify');
      let r;
      try {
        r = await verify(store, { revs: a.revs, mode, samplePercent: a.sample, sampleSeed: a.seed, chunkIds: a.chunkIds, onProgress: (p) => bar.update({ phase: 'checkout', ...p }) });
      } finally {
        bar.stop();
      }
      if (a.json) printJson(r);
      else {
        for (const v of r.versions) {
          out(`${v.name.padEnd(16)} ${v.ok ? green('ok') : red('DAMAGED')}`);
          for (const p of v.problems) out(`  ${p}`);
        }
        const unattached = r.problems.filter((p) => !p.versions.length || !r.versions.some((v) => p.versions.includes(v.name)));
        for (const p of unattached) out(`  ${p.message}`);
        const rate = r.bytes && r.seconds ? `, ${formatRate(r.bytes, r.seconds)}` : '';
        const what = mode === 'quick' ? 'presence checked' : mode === 'sample' ? `${r.chunks} sampled chunks read` : `${formatBytes(r.bytes)} read`;
        const damaged = r.versions.filter((v) => !v.ok).length;
        out(
          `${r.versions.length} version(s), ${r.files} file(s): ${what} in ${formatDuration(r.seconds)}${rate}; ` +
            (r.ok ? green('no problems') : red(`${r.problems.length} problem(s), ${damaged} damaged version(s)`)),
        );
      }
      if (!r.ok) process.exitCode = 1;
    });
  }),
};
