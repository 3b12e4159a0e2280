/**
 * The web view's request handler (docs/ui.md): server-rendered pages under /ui/ over one
 * store, for `mstore ui` (a local store) and `mstore serve` (the served store, behind tokens).
 *
 * Rules it keeps:
 * - Every page gets its data from the library functions behind the `--json` commands, and is
 *   built with `html` (html.ts), so stored text is always shown as text. No script runs on
 *   any page; the CSP allows none, and no inline style.
 * - Paths: a segment that is or decodes to `.` or `..`, or holds NUL, a control character or
 *   a backslash, is refused (400) before any routing; nothing is read from disk but the store.
 * - Tokens mode (serve): nothing but the login form and the style sheet without a session
 *   (401). The token is posted once, in a form body, never put in a URL.
 * - Local mode (`mstore ui`): the visitor gets a push-scope session, but only when the Host
 *   header names the loopback address it listens on (a page elsewhere cannot rebind a name).
 * - Changing things (status label, tag) is POST only, push scope, the session's CSRF value,
 *   and an Origin, when sent, of this server.
 */
import type http from 'node:http';
import { MstoreError, errorLine } from '../lib/errors.js';
import type { Store } from '../repo/store.js';
import { setLabels } from '../ops/labels.js';
import { createTag } from '../ops/tags.js';
import { SCOPE_RANK, type Scope } from '../remote/transport/http-tokens.js';
import { redactPaths } from '../remote/transport/http-limits.js';
import { endAfterBody, HTTP_STATUS } from '../remote/transport/http-server.js';
import { html, type Html } from './html.js';
import { FAVICON, page, STYLE, versionHref, type Frame } from './layout.js';
import { clearedCookie, csrfMatches, sessionCookie, Sessions, type Session } from './sessions.js';
import { versionsPage } from './pages/versions.js';
import { versionPage } from './pages/version.js';
import { comparePage } from './pages/compare.js';
import { curvesPage } from './pages/curves.js';
import { deploysPage } from './pages/deploys.js';

/** Resolves a presented token to its scope (serve's tokens file); absent: local mode. */
export type ScopeOf = (token: string) => Scope | undefined;

const MAX_FORM_BYTES = 16 * 1024;
/** A failed login waits this long: guessing tokens through the form is no faster than through the API. */
const LOGIN_FAILURE_DELAY_MS = 300;

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
};

class WebError extends Error {
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

export interface WebAppOptions {
  /** Cookies get `Secure` (the server speaks HTTPS). */
  secure?: boolean;
  /** Local mode: the loopback host:port the server listens on (Host headers allowed). */
  localHosts?: string[];
  /** Warnings (an unexpected failure), never with tokens. */
  log?: (line: string) => void;
  /** Server paths that never appear on a page (serve: the store directory). */
  redact?: string[];
}

/** The decoded segments after `/ui/`, or a 400 for a path that could leave its place. */
export function webPath(target: string): { segments: string[]; query: URLSearchParams } {
  const q = target.indexOf('?');
  const raw = q < 0 ? target : target.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : target.slice(q + 1));
  const refused = new WebError(400, 'refused: the request path holds a ., .. or NUL segment, a control character or a backslash');
  if (raw.length > 2048 || !raw.startsWith('/')) throw refused;
  const segments: string[] = [];
  for (const s of raw.split('/').slice(1)) {
    let d: string;
    try {
      d = decodeURIComponent(s);
    } catch {
      throw refused;
    }
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f\\]/.test(d) || d.split('/').some((c) => c === '.' || c === '..')) throw refused;
    segments.push(d);
  }
  for (const v of query.values()) if (v.includes('\0')) throw refused;
  return { segments, query };
}

export class WebApp {
  private readonly sessions = new Sessions();
  private readonly log: (line: string) => void;

  constructor(private readonly store: Store, private readonly opts: WebAppOptions = {}) {
    this.log = opts.log ?? (() => undefined);
  }

  /** Answers one request; returns the scope it ran with (for the server's log line). */
  async handle(req: http.IncomingMessage, res: http.ServerResponse, scopeOf?: ScopeOf): Promise<Scope | '-'> {
    let scope: Scope | '-' = '-';
    try {
      scope = await this.route(req, res, scopeOf);
    } catch (e) {
      this.fail(req, res, e);
    }
    return scope;
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse, scopeOf?: ScopeOf): Promise<Scope | '-'> {
    const method = req.method ?? 'GET';
    const { segments, query } = webPath(req.url ?? '/');
    if (segments.length === 1 && segments[0] === '') return this.redirect(res, '/ui/'), '-';
    if (segments[0] !== 'ui') throw new WebError(404, 'no such page');
    const rest = segments.slice(1);
    if (rest.length === 0) return this.redirect(res, '/ui/'), '-';
    if (rest.length === 1 && (rest[0] === 'style.css' || rest[0] === 'favicon.svg')) {
      this.allow(method, ['GET', 'HEAD']);
      if (rest[0] === 'style.css') this.send(req, res, 200, 'text/css; charset=utf-8', STYLE);
      else this.send(req, res, 200, 'image/svg+xml', FAVICON);
      return '-';
    }
    if (!scopeOf) this.checkLocalHost(req);
    if (rest.length === 1 && rest[0] === 'login') return this.login(req, res, scopeOf);

    const found = this.sessions.find(req.headers.cookie);
    let session = found?.session;
    if (!session) {
      if (scopeOf) {
        this.allow(method, ['GET', 'HEAD', 'POST']);
        this.send(req, res, 401, 'text/html; charset=utf-8', this.loginPage(), { 'www-authenticate': 'FormLogin realm="mstore"' });
        return '-';
      }
      const made = this.sessions.create('push');
      session = made.session;
      res.setHeader('set-cookie', sessionCookie(made.id, this.opts.secure === true));
    }
    const frame = (title: string, nav: Frame['nav']): Frame => ({ title, nav, scope: session.scope, loggedIn: !!scopeOf, csrf: session.csrf });

    if (rest.length === 1 && rest[0] === 'logout') {
      this.allow(method, ['POST']);
      await this.readForm(req, session); // the CSRF value and Origin: a page elsewhere cannot log anyone out
      if (found) this.sessions.drop(found.id);
      res.setHeader('set-cookie', clearedCookie(this.opts.secure === true));
      this.redirect(res, '/ui/login');
      return session.scope;
    }
    if (rest.length === 3 && rest[0] === 'version' && (rest[2] === 'label' || rest[2] === 'tag')) {
      this.allow(method, ['POST']);
      if (SCOPE_RANK[session.scope] < SCOPE_RANK.push) throw new WebError(403, `this session has scope '${session.scope}'; setting a status or a tag needs 'push'`);
      const form = await this.readForm(req, session);
      const rev = rest[1];
      if (rest[2] === 'label') {
        const status = form.get('status') ?? '';
        await setLabels(this.store, rev, { status }, []);
        this.redirect(res, `${versionHref(rev)}?changed=status`);
      } else {
        const name = form.get('name') ?? '';
        await createTag(this.store, name, rev);
        this.redirect(res, `${versionHref(rev)}?changed=tag`);
      }
      return session.scope;
    }

    this.allow(method, ['GET', 'HEAD']);
    let view: { title: string; body: Html };
    let nav: Frame['nav'];
    if (rest.length === 1 && rest[0] === '') {
      const pageNo = Number.parseInt(query.get('page') ?? '1', 10);
      view = await versionsPage(this.store, { line: query.get('line') ?? undefined, status: query.get('status') ?? undefined, tag: query.get('tag') ?? undefined, page: Number.isFinite(pageNo) ? pageNo : 1 });
      nav = 'versions';
    } else if (rest.length === 2 && rest[0] === 'version' && rest[1]) {
      const changed = query.get('changed');
      const notice = changed === 'status' ? 'Status set.' : changed === 'tag' ? 'Tag added.' : undefined;
      view = await versionPage(this.store, rest[1], { canChange: SCOPE_RANK[session.scope] >= SCOPE_RANK.push, csrf: session.csrf, notice });
      nav = 'versions';
    } else if (rest.length === 1 && rest[0] === 'compare') {
      view = await comparePage(this.store, query.get('a') || undefined, query.get('b') || undefined);
      nav = 'compare';
    } else if (rest.length === 1 && rest[0] === 'curves') {
      view = await curvesPage(this.store, query.getAll('v').filter(Boolean), query.get('metric') || undefined);
      nav = 'curves';
    } else if (rest.length === 1 && rest[0] === 'deploys') {
      view = await deploysPage(this.store, session.scope !== 'read');
      nav = 'deploys';
    } else {
      throw new WebError(404, 'no such page');
    }
    this.send(req, res, 200, 'text/html; charset=utf-8', page(frame(view.title, nav), view.body).text);
    return session.scope;
  }

  private async login(req: http.IncomingMessage, res: http.ServerResponse, scopeOf?: ScopeOf): Promise<Scope | '-'> {
    const method = req.method ?? 'GET';
    this.allow(method, ['GET', 'HEAD', 'POST']);
    if (!scopeOf) return this.redirect(res, '/ui/'), '-';
    if (method !== 'POST') {
      this.send(req, res, 200, 'text/html; charset=utf-8', this.loginPage());
      return '-';
    }
    const form = await this.readForm(req, undefined);
    const scope = scopeOf(form.get('token') ?? '');
    if (!scope) {
      await new Promise((r) => setTimeout(r, LOGIN_FAILURE_DELAY_MS));
      this.send(req, res, 401, 'text/html; charset=utf-8', this.loginPage('Unknown token.'), { 'www-authenticate': 'FormLogin realm="mstore"' });
      return '-';
    }
    const { id } = this.sessions.create(scope);
    res.setHeader('set-cookie', sessionCookie(id, this.opts.secure === true));
    this.redirect(res, '/ui/');
    return scope;
  }

  private loginPage(error?: string): string {
    return page(
      { title: 'Log in', nav: 'login' },
      html`${error ? html`<p class="error" role="alert">${error}</p>` : ''}
<p>Enter a token of this server (read scope to look, push scope to set a status or a tag). It is sent once; the browser keeps only a session cookie.</p>
<form class="filters" method="post" action="/ui/login">
<label>Token<input type="password" name="token" required autocomplete="current-password"></label>
<button type="submit">Log in</button>
</form>`,
    ).text;
  }

  /** Local mode: the Host header must name the loopback address and port listened on. */
  private checkLocalHost(req: http.IncomingMessage): void {
    const host = (req.headers.host ?? '').toLowerCase();
    if (!(this.opts.localHosts ?? []).includes(host)) throw new WebError(403, 'refused: this local view answers only to the address it listens on (Host header)');
  }

  /** A urlencoded form body (at most 16 KiB); with a session, its CSRF value and the Origin are checked. */
  private async readForm(req: http.IncomingMessage, session: Session | undefined): Promise<URLSearchParams> {
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/x-www-form-urlencoded') throw new WebError(415, 'a form body (application/x-www-form-urlencoded) is expected');
    const origin = req.headers.origin;
    if (origin !== undefined) {
      if (origin === 'null') throw new WebError(403, 'refused: the form was posted from an opaque origin');
      if (!URL.canParse(origin) || new URL(origin).host !== req.headers.host) throw new WebError(403, 'refused: the form was posted from another site (Origin)');
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_FORM_BYTES) throw new WebError(413, `the form is over ${MAX_FORM_BYTES} bytes`);
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of req as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > MAX_FORM_BYTES) throw new WebError(413, `the form is over ${MAX_FORM_BYTES} bytes`);
      chunks.push(c);
    }
    const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
    if (session && !csrfMatches(session, form.get('csrf') ?? undefined)) throw new WebError(403, 'refused: the form is stale or not from this page (CSRF value); reload the page and try again');
    return form;
  }

  private allow(method: string, methods: string[]): void {
    if (!methods.includes(method)) throw new WebError(405, `method ${method} not allowed here`, { allow: methods.join(', ') });
  }

  private redirect(res: http.ServerResponse, to: string): void {
    res.writeHead(303, { ...SECURITY_HEADERS, location: to, 'content-length': '0' });
    res.end();
  }

  private send(req: http.IncomingMessage, res: http.ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
    const bytes = Buffer.from(body, 'utf8');
    res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': String(bytes.length), ...headers });
    if (req.method === 'HEAD') return void res.end();
    if (req.complete || req.readableEnded) return void res.end(bytes);
    res.write(bytes);
    endAfterBody(req, res); // a refusal before the body was read (413, 401): drained, not reset
  }

  private fail(req: http.IncomingMessage, res: http.ServerResponse, e: unknown): void {
    let status = 500;
    let text = 'internal error (the server log has the details)';
    let headers: Record<string, string> = {};
    if (e instanceof WebError) {
      status = e.status;
      text = e.message;
      headers = e.headers;
    } else if (e instanceof MstoreError) {
      status = HTTP_STATUS[e.code] ?? 500;
      text = this.opts.redact ? redactPaths(errorLine(e), this.opts.redact) : errorLine(e);
    } else {
      this.log(`web view: ${req.method} ${(req.url ?? '').split('?')[0].slice(0, 200)}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = page({ title: status === 404 ? 'Not found' : 'Refused', nav: 'versions' }, html`<p class="error" role="alert">${text}</p><p><a href="/ui/">Versions</a></p>`).text;
    this.send(req, res, status, 'text/html; charset=utf-8', body, headers);
  }
}
