/** `mstore deploy`: push and make live, status, rollback, and the serving side's setup and apply (docs/deploy.md). */
import type { CommandModule } from 'yargs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { MstoreError } from '../../lib/errors.js';
import { atomicWriteFile } from '../../lib/fsutil.js';
import { latestEntry } from '../../repo/reflog.js';
import { openRemote } from '../../remote/open.js';
import { deploy, remoteDeployStatus, rollback, type DeployOutcome } from '../../deploy/client.js';
import { applyDeploy } from '../../deploy/apply.js';
import { defaultDeployConfig, readDeployConfig, triggerRef, DEPLOY_FILE } from '../../repo/deploy-config.js';
import type { DeployAction, DeployStatus } from '../../repo/deploy-records.js';
import { dim, formatDuration, green, handler, out, printJson, progressBar, red, withStore } from '../ui/output.js';


interface Args {
  args: string[];
  root?: string;
  api?: string;
  ref?: string;
  json: boolean;
}

const ZERO = '0'.repeat(40);

function report(o: DeployOutcome, json: boolean, what: string): void {
  const a = o.attempt;
  if (json) printJson(o);
  else if (!a) out(`${o.version} is already live on ${o.remote}`);
  else if (a.result === 'ok') out(green(`${a.version} is live on ${o.remote} (${what}, ${formatDuration(a.seconds)})`));
  if (a && a.result !== 'ok') throw new MstoreError('EREMOTE', `${what} of ${a.version} failed on ${o.remote}: ${a.reason ?? 'the attempt did not finish'}`);
  if (!a && o.status.live?.commit !== o.commit) throw new MstoreError('EREMOTE', `${o.remote} did not deploy ${o.version} (no deploy attempt was recorded; is its post-receive hook installed?)`);
}

function printStatus(st: DeployStatus, remote: string): void {
  out(`Deploys on ${remote} (trigger ${st.ref?.replace(/^refs\/heads\//, '')}${st.root ? `, root ${st.root}` : ''})`);
  out(st.live ? `live: ${st.live.version} (${st.live.commit.slice(0, 12)}) since ${st.live.since ?? 'unknown'}` : 'live: nothing');
  for (const a of st.history.slice(0, 20)) {
    const mark = a.result === 'ok' ? green('ok    ') : a.result === 'failed' ? red('failed') : 'unfinished';
    out(`  ${a.time.replace('T', ' ').slice(0, 19)}  ${a.action.padEnd(9)} ${a.version.padEnd(12)} ${mark}${a.reason ? dim(`  ${a.reason}`) : ''}`);
  }
}

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    let s = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d: string) => (s += d));
    process.stdin.on('end', () => resolve(s));
    process.stdin.on('error', reject);
  });
}

export const deployCommand: CommandModule<object, Args> = {
  command: 'deploy [args..]',
  describe: 'Deploy a version to the inference box (push, switch, register, activate), show deploy status, roll back',
  builder: (y) =>
    y
      .usage(
        '$0 deploy REMOTE REV                 push REV and make it live there\n' +
          '$0 deploy status REMOTE [--json]     live version, when, every attempt\n' +
          '$0 deploy rollback REMOTE [REV]      back to the previous good version (or REV), no re-transfer\n' +
          '$0 deploy setup --root DIR --api URL  (in the serving store) write deploy.json\n' +
          '$0 deploy apply                      (run by the post-receive hook) deploy what the trigger ref names',
      )
      .positional('args', { type: 'string', array: true, default: [] })
      .option('root', { type: 'string', requiresArg: true, describe: 'setup: the deploy directory (<root>/<version>/, <root>/current)' })
      .option('api', { type: 'string', requiresArg: true, describe: 'setup: base URL of the inference API' })
      .option('ref', { type: 'string', requiresArg: true, describe: 'setup: the trigger ref (default deployed)' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 deploy box v004', 'send v004 to the box and make it the active model')
      .example('$0 deploy status box --json', 'what is live there, and the history of attempts')
      .example('$0 deploy rollback box', 'back to the previous good version in about a second')
      .example('$0 -C /srv/models deploy setup --root /srv/deploy --api http://127.0.0.1:8765', 'on the box: configure deploys') as never,
  handler: handler(async (a) => {
    const [sub, ...rest] = a.args;
    await withStore(async (store) => {
      if (sub === 'setup') {
        if (!a.root || !a.api) throw new MstoreError('EUSAGE', 'usage: mstore deploy setup --root DIR --api URL [--ref NAME]');
        const file = path.join(store.dir, DEPLOY_FILE);
        const existing = await readFile(file, 'utf8').catch(() => undefined);
        if (existing) throw new MstoreError('EEXISTS', `${file} exists; edit it (docs/deploy.md)`);
        const cfg = defaultDeployConfig(path.resolve(a.root), a.api);
        if (a.ref) cfg.ref = a.ref;
        await atomicWriteFile(file, `${JSON.stringify(cfg, null, 2)}\n`);
        await readDeployConfig(store); // validates
        if (a.json) return printJson(cfg);
        return out(`Deploys configured in ${file}: pushes that move '${cfg.ref}' go live under ${cfg.root} and on ${cfg.api.baseUrl}`);
      }
      if (sub === 'apply') {
        // Hook side: "old new ref" lines on stdin (git's post-receive protocol).
        const cfg = await readDeployConfig(store);
        if (!cfg) return;
        const ref = triggerRef(cfg);
        const lines = (await readStdin()).split('\n').map((l) => l.trim().split(/\s+/));
        const moved = lines.filter((p) => p.length === 3 && p[2] === ref && p[1] !== ZERO).pop();
        if (!moved) return;
        const entry = await latestEntry(store, (e) => e.ref === ref);
        const action: DeployAction = entry?.message?.startsWith('rollback') ? 'rollback' : 'deploy';
        const commit = await store.repo.peelToCommit(moved[1]);
        const r = await applyDeploy(store, commit, { action, onLine: (l) => out(l) });
        if (r.result !== 'ok') {
          out(`deploy failed: ${r.reason}`);
          process.exitCode = 1;
        }
        return;
      }
      if (sub === 'status') {
        if (rest.length !== 1) throw new MstoreError('EUSAGE', 'usage: mstore deploy status REMOTE [--json]');
        const { remote } = await openRemote(store, rest[0]);
        try {
          const st = await remoteDeployStatus(remote);
          if (a.json) return printJson({ remote: remote.display, ...st });
          printStatus(st, remote.display);
        } finally {
          await remote.close();
        }
        return;
      }
      const onRemoteOutput = (line: string): void => void process.stderr.write(`remote: ${line}\n`);
      if (sub === 'rollback') {
        if (rest.length < 1 || rest.length > 2) throw new MstoreError('EUSAGE', 'usage: mstore deploy rollback REMOTE [REV]');
        const { remote } = await openRemote(store, rest[0]);
        try {
          report(await rollback(store, remote, rest[1], { onRemoteOutput }), a.json, 'rollback');
        } finally {
          await remote.close();
        }
        return;
      }
      if (!sub || rest.length !== 1) throw new MstoreError('EUSAGE', 'usage: mstore deploy REMOTE REV (see mstore deploy --help)');
      const { remote } = await openRemote(store, sub);
      const bar = progressBar('push');
      try {
        const r = await deploy(store, remote, rest[0], { onProgress: bar.update, onRemoteOutput });
        bar.stop();
        report(r, a.json, 'deploy');
      } finally {
        bar.stop();
        await remote.close();
      }
    });
  }),
};
