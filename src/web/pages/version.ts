/**
 * One version's page: metadata, params, metrics, files (path, size, sha256), the tensors its
 * safetensors files hold, lineage (parents, and for a consolidation its base and adapter, as
 * links), labels and tags, and the deploy attempts that used it. The data is `show`'s (behind
 * `mstore show --json`), `tensorSummary`'s (`show --tensors`) and `deployStatus`'s (`deploy
 * status --json`). With push scope, forms set the status label and add a tag.
 */
import type { Store } from '../../repo/store.js';
import { STATUSES } from '../../repo/versions.js';
import { deployStatus } from '../../repo/deploy-records.js';
import { show } from '../../ops/inspect.js';
import { versionSide } from '../../ops/diff/sides.js';
import { tensorSummary } from '../../ops/diff/tensor-summary.js';
import { html, type Html } from '../html.js';
import { formatBytes, formatDate, formatValue, statusBadge, table, versionHref, versionLink } from '../layout.js';

export interface VersionPageOptions {
  /** Forms that change things are shown (push scope) with this CSRF token. */
  canChange: boolean;
  csrf: string;
  /** A line to show above the page: what a form just did. */
  notice?: string;
}

function keyValues(caption: string, o: Record<string, unknown>): Html {
  const rows = Object.entries(o).map(([k, v]) => [html`<span class="mono">${k}</span>`, html`<span class="mono">${formatValue(v)}</span>`]);
  return rows.length ? table(caption, ['Name', 'Value'], rows) : html`<p class="muted">No ${caption.toLowerCase()}.</p>`;
}

/** The consolidation record a merged version carries in its meta (ops/consolidate.ts). */
function consolidationOf(meta: Record<string, unknown>): { base?: string; adapter?: string } | undefined {
  const c = meta.consolidation as { base?: { version?: unknown }; adapter?: { version?: unknown } } | undefined;
  if (!c || typeof c !== 'object') return undefined;
  const name = (x: unknown): string | undefined => (typeof x === 'string' ? x : undefined);
  return { base: name(c.base?.version), adapter: name(c.adapter?.version) };
}

export async function versionPage(store: Store, rev: string, opts: VersionPageOptions): Promise<{ title: string; body: Html }> {
  const r = await show(store, rev);
  const side = await versionSide(store, r.commit);
  let tensors;
  try {
    tensors = await tensorSummary(side);
  } finally {
    await side.close();
  }
  const deploys = (await deployStatus(store)).history.filter((a) => a.commit === r.commit);
  const m = r.meta;
  const name = r.version ?? r.commit.slice(0, 12);
  const consolidation = m ? consolidationOf(m.meta) : undefined;

  const facts = html`<dl class="meta">
<dt>Status</dt><dd>${statusBadge(r.status)}${r.labels.status && m?.status && m.status !== r.labels.status ? html` <span class="muted">(was ${m.status} at commit)</span>` : ''}</dd>
<dt>Commit</dt><dd class="mono">${r.commit}</dd>
${m ? html`<dt>Description</dt><dd>${m.description}</dd>
<dt>Created</dt><dd><time datetime="${m.created}">${formatDate(m.created)}</time> by ${m.author.name} &lt;${m.author.email}&gt; on ${m.host}</dd>
<dt>Line</dt><dd>${m.line}</dd>
<dt>Size</dt><dd>${formatBytes(m.files.bytes)} in ${m.files.count} file${m.files.count === 1 ? '' : 's'}</dd>` : html`<dt>Record</dt><dd>no version record (a commit made outside mstore)</dd>`}
<dt>Tags</dt><dd>${r.tags.length ? r.tags.map((t) => html`<span class="tag">${t}</span>`) : html`<span class="muted">none</span>`}</dd>
</dl>`;

  const lineage = html`<h2>Lineage</h2>
<dl class="meta">
<dt>Parents</dt><dd>${m?.lineage.parent_versions.length ? m.lineage.parent_versions.map((p, i) => html`${i ? ', ' : ''}${versionLink(p)}`) : html`<span class="muted">none</span>`}</dd>
${consolidation ? html`<dt>Consolidation base</dt><dd>${versionLink(consolidation.base)}</dd><dt>Consolidation adapter</dt><dd>${versionLink(consolidation.adapter)}</dd>` : ''}
</dl>`;

  const labels = Object.entries(r.labels);
  const labelsSection = html`<h2>Labels</h2>${labels.length ? table('Labels', ['Label', 'Value'], labels.map(([k, v]) => [html`<span class="mono">${k}</span>`, v])) : html`<p class="muted">No labels.</p>`}`;

  const forms = opts.canChange
    ? html`<h2>Change</h2>
<form class="inline" method="post" action="${versionHref(name)}/label">
<input type="hidden" name="csrf" value="${opts.csrf}">
<label>Status<select name="status">${STATUSES.map((s) => html`<option value="${s}"${s === r.status ? html` selected` : ''}>${s}</option>`)}</select></label>
<button type="submit">Set status</button>
</form>
<form class="inline" method="post" action="${versionHref(name)}/tag">
<input type="hidden" name="csrf" value="${opts.csrf}">
<label>New tag<input name="name" required maxlength="200" autocomplete="off"></label>
<button type="submit">Add tag</button>
</form>`
    : html`<p class="muted">Read-only: setting a status or a tag needs a token with push scope.</p>`;

  const files = table(
    `${r.files.length} file${r.files.length === 1 ? '' : 's'}`,
    ['Path', 'Size', 'Kind', 'sha256 / git blob id'],
    r.files.map((f) => [html`<span class="mono">${f.path}</span>`, formatBytes(f.size), f.kind, html`<span class="mono">${f.oid}</span>`]),
    'files',
  );
  const tensorTable = tensors.length
    ? table(
        'Tensors by file',
        ['File', 'Tensors', 'Parameters', 'Bytes', 'dtypes'],
        tensors.map((t) => [html`<span class="mono">${t.path}</span>${t.kind === 'sharded' ? ' (sharded)' : ''}`, t.tensors, t.parameters.toLocaleString('en'), formatBytes(t.bytes), Object.entries(t.dtypes).map(([d, n]) => `${d} ×${n}`).join(', ')]),
      )
    : html`<p class="muted">No safetensors files.</p>`;
  const deployTable = deploys.length
    ? table('Deploy attempts of this version, newest first', ['Started (UTC)', 'Action', 'Result', 'Reason'], deploys.map((a) => [formatDate(a.time), a.action, a.result, a.reason ?? '']))
    : html`<p class="muted">Never deployed from this store.</p>`;

  const body = html`${opts.notice ? html`<p class="notice" role="status">${opts.notice}</p>` : ''}
${r.problems.length ? html`<div class="error" role="alert">${r.problems.map((p) => html`<p>${p}</p>`)}</div>` : ''}
${facts}
${lineage}
${labelsSection}
${forms}
<h2>Params</h2>${keyValues('Params', m?.params ?? {})}
<h2>Metrics</h2>${keyValues('Metrics', m?.metrics ?? {})}
<h2>Files</h2>${files}
<h2>Tensors</h2>${tensorTable}
<h2>Deploys</h2>${deployTable}
<p><a href="/ui/compare?b=${encodeURIComponent(name)}">Compare with another version</a> · <a href="/ui/curves?v=${encodeURIComponent(name)}">Learning curves</a></p>`;
  return { title: `Version ${name}`, body };
}
