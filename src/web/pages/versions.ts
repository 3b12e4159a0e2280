/**
 * The versions page: one line's versions, newest first, each with its status badge, date,
 * description, size, key metrics and tags; filtered by line, status and tag; paged, so that a
 * long history stays quick (the walk reads cached records; only one page is rendered). The
 * data is `log`'s, the function behind `mstore log --json`.
 */
import type { Store } from '../../repo/store.js';
import { DEFAULT_LINE, STATUSES } from '../../repo/versions.js';
import { log, type LogEntry } from '../../ops/inspect.js';
import { html, type Html } from '../html.js';
import { formatBytes, formatDate, formatValue, query, statusBadge, table, versionLink } from '../layout.js';

export const PAGE_SIZE = 50;

export interface VersionsQuery {
  line?: string;
  status?: string;
  tag?: string;
  page?: number;
}

/** The lines of the store: `main` and every LINE with a refs/heads/LINE/latest. */
export async function listLines(store: Store): Promise<string[]> {
  const heads = await store.repo.listRefs('refs/heads');
  const lines = heads.filter((h) => h.endsWith('/latest')).map((h) => h.slice(0, -'/latest'.length));
  return [...(heads.includes('latest') ? [DEFAULT_LINE] : []), ...lines.sort()];
}

const VERSION_TAG = /^(?:(.+)\/)?v[0-9]+$/;

/**
 * From one listing of the tags: those the filter offers (every tag that is not a version's
 * name, `vNNN` or `LINE/vNNN`), and the number of `line`'s version tags (one per listed version).
 */
async function readTags(store: Store, line: string | undefined): Promise<{ others: string[]; versionsOfLine: number }> {
  const others: string[] = [];
  let versionsOfLine = 0;
  for (const name of await store.repo.listRefs('refs/tags')) {
    const m = VERSION_TAG.exec(name);
    if (!m) others.push(name);
    else if ((m[1] ?? DEFAULT_LINE) === line) versionsOfLine++;
  }
  return { others: others.sort(), versionsOfLine };
}

function metricsCell(m: Record<string, unknown>): Html {
  const shown = Object.entries(m).filter(([, v]) => typeof v === 'number' || typeof v === 'string').slice(0, 3);
  return html`${shown.map(([k, v]) => html`<span class="mono">${k}=${formatValue(v)}</span> `)}`;
}

export async function versionsPage(store: Store, q: VersionsQuery): Promise<{ title: string; body: Html; problems: string[] }> {
  const lines = await listLines(store);
  const line = q.line && lines.includes(q.line) ? q.line : lines[0];
  const status = q.status && (STATUSES as readonly string[]).includes(q.status) ? q.status : undefined;
  const wantedPage = Math.max(1, q.page ?? 1);
  const { others: tagNames, versionsOfLine } = await readTags(store, line);
  const tag = q.tag && tagNames.includes(q.tag) ? q.tag : undefined;
  let entries: LogEntry[] = [];
  let problems: string[] = [];
  let total = 0;
  if (line) {
    const rev = line === DEFAULT_LINE ? 'latest' : `${line}/latest`;
    // Unfiltered, the walk stops at the requested page and the count is the line's version
    // tags (each listed version has one): a long history's first page reads 50 records, not all.
    const unfiltered = !status && !tag;
    const r = await log(store, { rev, status, limit: unfiltered ? wantedPage * PAGE_SIZE : undefined });
    entries = r.entries;
    problems = r.problems;
    total = unfiltered ? Math.max(entries.length, versionsOfLine) : entries.length;
  }
  if (tag) {
    entries = entries.filter((e) => e.tags.includes(tag));
    total = entries.length;
  }
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const pageNo = Math.min(wantedPage, pages);
  const shown = entries.slice((pageNo - 1) * PAGE_SIZE, pageNo * PAGE_SIZE);
  const here = (p: number): string => `/ui/${query([['line', line === lines[0] ? undefined : line], ['status', status], ['tag', tag], ['page', p > 1 ? String(p) : undefined]])}`;
  const option = (value: string, label: string, selected: boolean): Html => html`<option value="${value}"${selected ? html` selected` : ''}>${label}</option>`;
  const filters = html`<form class="filters" method="get" action="/ui/">
<label>Line<select name="line">${lines.map((l) => option(l, l, l === line))}</select></label>
<label>Status<select name="status">${option('', 'any', !status)}${STATUSES.map((s) => option(s, s, s === status))}</select></label>
<label>Tag<select name="tag">${option('', 'any', !tag)}${tagNames.map((t) => option(t, t, t === tag))}</select></label>
<button type="submit">Filter</button>
</form>`;
  const rows = shown.map((e) => [
    versionLink(e.version ?? e.commit.slice(0, 12)),
    statusBadge(e.status),
    html`<time datetime="${e.date}">${formatDate(e.date)}</time>`,
    e.description,
    html`<span class="num">${formatBytes(e.bytes)}</span>`,
    metricsCell(e.metrics),
    html`${e.tags.map((t) => html`<span class="tag">${t}</span>`)}`,
  ]);
  const pager = html`<nav class="pager" aria-label="Pages">
${pageNo > 1 ? html`<a href="${here(pageNo - 1)}" rel="prev">← Newer</a>` : ''}
<span>page ${pageNo} of ${pages} · ${total} version${total === 1 ? '' : 's'}</span>
${pageNo < pages ? html`<a href="${here(pageNo + 1)}" rel="next">Older →</a>` : ''}
</nav>`;
  const body = html`${filters}
${problems.length ? html`<div class="error" role="alert"><p>Versions that could not be read:</p><ul>${problems.map((p) => html`<li>${p}</li>`)}</ul></div>` : ''}
${shown.length
    ? html`${table(`${line} line, newest first`, ['Version', 'Status', 'Date (UTC)', 'Description', 'Size', 'Metrics', 'Tags'], rows, 'versions')}${pager}`
    : html`<p>${line ? 'No version matches.' : 'This store has no versions yet: mstore commit makes the first.'}</p>`}`;
  return { title: 'Versions', body, problems };
}
