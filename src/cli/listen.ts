/** The --listen option of `serve` and `ui`. */
import { MstoreError } from '../lib/errors.js';

/** HOST:PORT, [IPv6]:PORT; port 0 picks a free one. */
export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new MstoreError('EUSAGE', `--listen expects HOST:PORT (e.g. 127.0.0.1:8750), got '${s}'`);
  return { host: m[1] ?? m[2], port };
}
