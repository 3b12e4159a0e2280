/**
 * Login sessions of the web view. A token is entered once in the login form; the server keeps
 * its scope under a random session id and sets that id as an HttpOnly, SameSite=Strict cookie
 * (Secure over HTTPS), so the token itself is never stored by the browser, never in a URL and
 * never logged. Sessions live in memory (a restart logs everyone out) for at most 12 hours.
 * Each session has its own CSRF value, which every form that changes something must echo.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Scope } from '../remote/transport/http-tokens.js';

export const COOKIE = 'mstore_ui';
const LIFETIME_MS = 12 * 3600_000;
/** Most sessions kept; the oldest goes first (a flood of logins cannot grow memory). */
const MAX_SESSIONS = 10_000;

export interface Session {
  scope: Scope;
  csrf: string;
  expires: number;
}

export class Sessions {
  private readonly byId = new Map<string, Session>();

  create(scope: Scope): { id: string; session: Session } {
    const id = randomBytes(32).toString('base64url');
    const session = { scope, csrf: randomBytes(24).toString('base64url'), expires: Date.now() + LIFETIME_MS };
    this.byId.set(id, session);
    while (this.byId.size > MAX_SESSIONS) this.byId.delete(this.byId.keys().next().value!);
    return { id, session };
  }

  /** The live session of a request's cookie header, or undefined. */
  find(cookieHeader: string | undefined): { id: string; session: Session } | undefined {
    const id = readCookie(cookieHeader, COOKIE);
    if (!id) return undefined;
    const s = this.byId.get(id);
    if (!s) return undefined;
    if (s.expires < Date.now()) {
      this.byId.delete(id);
      return undefined;
    }
    return { id, session: s };
  }

  drop(id: string): void {
    this.byId.delete(id);
  }
}

/** Whether a form's CSRF value is the session's (constant time). */
export function csrfMatches(session: Session, presented: string | undefined): boolean {
  const a = Buffer.from(session.csrf);
  const b = Buffer.from(presented ?? '');
  return a.length === b.length && timingSafeEqual(a, b);
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

export function sessionCookie(id: string, secure: boolean): string {
  return `${COOKIE}=${id}; Path=/ui/; HttpOnly; SameSite=Strict; Max-Age=${LIFETIME_MS / 1000}${secure ? '; Secure' : ''}`;
}

export function clearedCookie(secure: boolean): string {
  return `${COOKIE}=; Path=/ui/; HttpOnly; SameSite=Strict; Max-Age=0${secure ? '; Secure' : ''}`;
}
