import type { CommandModule } from 'yargs';
import { MstoreError } from '../../lib/errors.js';
import { addRemote, readRemotes, removeRemote } from '../../remote/config.js';
import { handler, out, printJson, withStore } from '../ui/output.js';

interface Args {
  args: string[];
  tokenEnv?: string;
  endpoint?: string;
  region?: string;
  json: boolean;
}

export const remoteCommand: CommandModule<object, Args> = {
  command: 'remote [args..]',
  describe: 'Add, list and remove named remotes (another store, mstore serve, S3)',
  builder: (y) =>
    y
      .usage(
        '$0 remote add NAME URL [--token-env VAR]   URL: a path, file://, http(s)://HOST:PORT, s3://BUCKET/PREFIX\n' +
          '$0 remote list [--json]\n' +
          '$0 remote remove NAME',
      )
      .positional('args', { type: 'string', array: true, default: [] })
      .option('token-env', { type: 'string', requiresArg: true, describe: 'environment variable holding the bearer token (HTTP)' })
      .option('endpoint', { type: 'string', requiresArg: true, describe: 'S3 endpoint URL (default: AWS_ENDPOINT_URL)' })
      .option('region', { type: 'string', requiresArg: true, describe: 'S3 region (default: AWS_REGION)' })
      .option('json', { type: 'boolean', default: false })
      .example('$0 remote add box http://192.168.1.50:8750 --token-env MSTORE_TOKEN', 'the inference box running mstore serve')
      .example('$0 remote add nas /mnt/nas/models-store', 'a store on a mounted disk')
      .example('$0 remote add team s3://ml-models/llama-lora --endpoint http://127.0.0.1:7480', 'S3-compatible storage') as never,
  handler: handler(async (a) => {
    const [sub, ...rest] = a.args;
    await withStore(async (store) => {
      if (sub === 'add') {
        if (rest.length !== 2) throw new MstoreError('EUSAGE', 'usage: mstore remote add NAME URL [--token-env VAR]');
        const cfg = await addRemote(store, rest[0], rest[1], { tokenEnv: a.tokenEnv, endpoint: a.endpoint, region: a.region });
        if (a.json) return printJson({ name: rest[0], ...cfg });
        return out(`Remote '${rest[0]}' -> ${cfg.url}${cfg.tokenEnv ? ` (token from $${cfg.tokenEnv})` : ''}`);
      }
      if (sub === 'remove' || sub === 'rm') {
        if (rest.length !== 1) throw new MstoreError('EUSAGE', 'usage: mstore remote remove NAME');
        await removeRemote(store, rest[0]);
        return out(`Remote '${rest[0]}' removed (nothing was deleted there)`);
      }
      if (sub === undefined || sub === 'list') {
        const { remotes } = await readRemotes(store);
        if (a.json) return printJson(Object.entries(remotes).map(([name, c]) => ({ name, ...c })));
        for (const [name, c] of Object.entries(remotes)) out(`${name}\t${c.url}${c.tokenEnv ? `\t(token: $${c.tokenEnv})` : ''}`);
        return;
      }
      throw new MstoreError('EUSAGE', `unknown remote subcommand '${sub}' (add, list, remove)`);
    });
  }),
};
