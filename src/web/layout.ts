/**
 * The frame every page shares (head, navigation, footer), the style sheet, and the small
 * renderings pages repeat: status badges (colour, symbol and word, so that none of the three is
 * needed alone), sizes, dates, numbers, links to versions. Pure functions of their input.
 */
import { html, type Html, type HtmlValue } from './html.js';

export { formatBytes } from '../lib/units.js';

/** The five statuses with the symbol the user's own UI shows (seeds 000 and 004). */
const STATUS_SYMBOL: Record<string, string> = { completed: '✅', training: '🔄', pending: '⏳', failed: '❌', draft: '📝' };

export function statusBadge(status: string | null | undefined): Html {
  if (!status) return html`<span class="badge badge-none">no status</span>`;
  const known = Object.hasOwn(STATUS_SYMBOL, status);
  return html`<span class="badge badge-${known ? status : 'none'}"><span aria-hidden="true">${known ? STATUS_SYMBOL[status] : '•'}</span> ${status}</span>`;
}

/** `2026-12-07 10:47` from an ISO date (UTC as stored); the raw value when it is not one. */
export function formatDate(iso: string | null | undefined): string {
  if (!iso) return '-';
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(iso);
  return m ? `${m[1]} ${m[2]}` : iso;
}

export function formatValue(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(5)));
  if (typeof v === 'string') return v;
  return JSON.stringify(v) ?? '-';
}

/** The page of a version (a name or a commit id; `/` in line names is encoded). */
export function versionHref(rev: string): string {
  return `/ui/version/${encodeURIComponent(rev)}`;
}

export function versionLink(rev: string | undefined, fallback = '-'): Html {
  return rev ? html`<a href="${versionHref(rev)}">${rev}</a>` : html`${fallback}`;
}

/** A query string from pairs, empty values left out. */
export function query(pairs: [string, string | undefined][]): string {
  const q = new URLSearchParams();
  for (const [k, v] of pairs) if (v) q.append(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

export interface Frame {
  title: string;
  /** Which navigation entry is this page's. */
  nav: 'versions' | 'compare' | 'curves' | 'deploys' | 'login';
  /** The visitor's scope: read, push or admin (shown; forms that change things need push). */
  scope?: string;
  /** Whether a logout form is shown (token login). */
  loggedIn?: boolean;
  csrf?: string;
}

export function page(f: Frame, body: HtmlValue): Html {
  const item = (key: Frame['nav'], href: string, label: string): Html =>
    html`<li><a href="${href}"${f.nav === key ? html` aria-current="page"` : ''}>${label}</a></li>`;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${f.title} · mstore</title>
<link rel="stylesheet" href="/ui/style.css">
<link rel="icon" href="/ui/favicon.svg" type="image/svg+xml">
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header>
<nav aria-label="Main">
<span class="brand">mstore</span>
<ul>
${item('versions', '/ui/', 'Versions')}
${item('compare', '/ui/compare', 'Compare')}
${item('curves', '/ui/curves', 'Learning curves')}
${item('deploys', '/ui/deploys', 'Deploys')}
</ul>
${f.scope ? html`<span class="scope">scope: ${f.scope}</span>` : ''}
${f.loggedIn ? html`<form method="post" action="/ui/logout" class="logout"><input type="hidden" name="csrf" value="${f.csrf ?? ''}"><button type="submit">Log out</button></form>` : ''}
</nav>
</header>
<main id="main">
<h1>${f.title}</h1>
${body}
</main>
</body>
</html>
`;
}

/** A table that scrolls sideways on a narrow screen instead of widening the page. */
export function table(caption: string, head: string[], rows: HtmlValue[][], cls = ''): Html {
  return html`<div class="scroll"><table class="${cls}"><caption>${caption}</caption>
<thead><tr>${head.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead>
<tbody>${rows.map((r) => html`<tr>${r.map((c) => html`<td>${c}</td>`)}</tr>`)}</tbody></table></div>`;
}

/** The tab icon: a stack of three layers. */
export const FAVICON = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M8 1 15 4.5 8 8 1 4.5z" fill="#1f6feb"/><path d="M1 8l7 3.5L15 8M1 11.5 8 15l7-3.5" fill="none" stroke="#1f6feb" stroke-width="1.5"/></svg>';

/** The style sheet (served as /ui/style.css; the CSP allows no inline style). Contrast ≥ 4.5:1 throughout. */
export const STYLE = `
:root { --fg: #1b1f24; --muted: #4b5563; --bg: #ffffff; --line: #d0d7de; --link: #0b57d0; --focus: #b35900; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
a { color: var(--link); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 8px; top: 8px; background: #fff; padding: 4px 8px; z-index: 2; }
header { border-bottom: 1px solid var(--line); background: #f6f8fa; }
nav { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 16px; padding: 8px 16px; max-width: 1200px; margin: 0 auto; }
nav ul { display: flex; flex-wrap: wrap; gap: 4px 14px; list-style: none; margin: 0; padding: 0; }
nav a[aria-current="page"] { font-weight: 700; color: var(--fg); }
.brand { font-weight: 700; }
.scope { color: var(--muted); margin-left: auto; }
.logout { display: inline; }
main { max-width: 1200px; margin: 0 auto; padding: 8px 16px 32px; }
h1 { font-size: 1.5rem; margin: 12px 0; overflow-wrap: anywhere; }
h2 { font-size: 1.15rem; margin: 24px 0 8px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 12px; }
caption { text-align: left; color: var(--muted); padding: 4px 0; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
td { overflow-wrap: anywhere; }
th { background: #f6f8fa; white-space: nowrap; }
td.num, th.num { text-align: right; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.9em; overflow-wrap: anywhere; }
.badge { display: inline-block; white-space: nowrap; padding: 1px 8px; border-radius: 10px; font-size: 0.85em; border: 1px solid; }
.badge-completed { background: #dafbe1; color: #0f5323; border-color: #4ac26b; }
.badge-training { background: #ddf4ff; color: #0a3069; border-color: #54aeff; }
.badge-pending { background: #fff8c5; color: #633c01; border-color: #d4a72c; }
.badge-failed { background: #ffebe9; color: #82071e; border-color: #ff8182; }
.badge-draft { background: #eaeef2; color: #24292f; border-color: #8c959f; }
.badge-none { background: #ffffff; color: var(--muted); border-color: var(--line); }
.tag { display: inline-block; padding: 0 6px; margin: 1px 2px; border-radius: 4px; background: #eaeef2; font-size: 0.85em; }
.better { color: #0f5323; font-weight: 600; }
.worse { color: #82071e; font-weight: 600; }
.muted { color: var(--muted); }
.error { border: 1px solid #ff8182; background: #ffebe9; color: #82071e; padding: 8px 12px; border-radius: 6px; overflow-wrap: anywhere; }
.notice { border: 1px solid #4ac26b; background: #dafbe1; color: #0f5323; padding: 8px 12px; border-radius: 6px; }
form.filters, form.inline { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: end; margin: 8px 0 12px; }
label { display: flex; flex-direction: column; gap: 2px; font-size: 0.9em; color: var(--muted); }
input, select, button { font: inherit; padding: 4px 8px; min-height: 32px; border: 1px solid #8c959f; border-radius: 6px; background: #fff; color: var(--fg); }
button { background: #1f6feb; color: #fff; border-color: #1f6feb; cursor: pointer; }
.logout button { background: #fff; color: var(--fg); border-color: #8c959f; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.pager { display: flex; gap: 16px; align-items: center; }
.chart svg { max-width: 100%; height: auto; }
fieldset { border: 1px solid var(--line); border-radius: 6px; display: flex; flex-wrap: wrap; gap: 4px 14px; max-width: 100%; }
label.check { flex-direction: row; align-items: center; gap: 6px; color: var(--fg); font-size: 1em; }
label.check input { min-height: 0; }
@media (max-width: 640px) { body { font-size: 14px; } th, td { padding: 4px 6px; } .scope { margin-left: 0; } }
`;
