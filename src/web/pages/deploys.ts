/**
 * Deploys: the live version and every attempt (deploy, rollback, reconcile) with its result
 * and reason, newest first, from `deployStatus`, the function behind `mstore deploy status
 * --json`. The deploy root (a server path) is shown to push and admin scope only, as /v1/deploy does.
 */
import type { Store } from '../../repo/store.js';
import { deployStatus } from '../../repo/deploy-records.js';
import { html, type Html } from '../html.js';
import { formatDate, table, versionLink } from '../layout.js';

export async function deploysPage(store: Store, showRoot: boolean): Promise<{ title: string; body: Html }> {
  const st = await deployStatus(store);
  if (!st.configured && !st.history.length) {
    return { title: 'Deploys', body: html`<p>No deploy is configured for this store (deploy.json; docs/deploy.md).</p>` };
  }
  const live = st.live
    ? html`<p>Live: ${versionLink(st.live.version)} <span class="mono">${st.live.commit.slice(0, 12)}</span>${st.live.since ? html`, since ${formatDate(st.live.since)} UTC` : ''}</p>`
    : html`<p>Nothing is live.</p>`;
  const rows = st.history.map((a) => [
    html`<time datetime="${a.time}">${formatDate(a.time)}</time>`,
    a.action,
    versionLink(a.version),
    html`<span class="${a.result === 'ok' ? 'better' : a.result === 'failed' ? 'worse' : ''}">${a.result}</span>`,
    a.reason ?? '',
    a.previous === undefined ? '' : a.previous ?? 'none',
    a.seconds === undefined ? '' : `${a.seconds.toFixed(1)} s`,
  ]);
  const body = html`${live}
${st.ref ? html`<p class="muted">Trigger ref <span class="mono">${st.ref}</span>${showRoot && st.root ? html`, root <span class="mono">${st.root}</span>` : ''}</p>` : ''}
${rows.length ? table('Every attempt, newest first', ['Started (UTC)', 'Action', 'Version', 'Result', 'Reason', 'Before', 'Took'], rows, 'deploys') : html`<p>No deploy attempt yet.</p>`}`;
  return { title: 'Deploys', body };
}
