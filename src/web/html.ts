/**
 * HTML built so that text can never become markup: `html\`…\`` escapes every interpolated value
 * (text and attribute values alike: & < > " ' are entities), except values that are themselves
 * `Html` (made by this tag or by `trusted`). Arrays are joined, null/undefined/false are empty.
 * Every page of the web view is built with it; nothing else writes markup.
 */

/** Markup that is already safe: the output of `html` or `trusted`. */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text as HTML text or attribute value. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ENTITIES[c]);
}

export type HtmlValue = Html | string | number | boolean | null | undefined | HtmlValue[];

function render(v: HtmlValue): string {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return v.map(render).join('');
  return escapeHtml(String(v));
}

export function html(parts: TemplateStringsArray, ...values: HtmlValue[]): Html {
  let out = parts[0];
  for (let i = 0; i < values.length; i++) out += render(values[i]) + parts[i + 1];
  return new Html(out);
}

/**
 * Markup from a source this program controls (an SVG rendered by vega, which escapes its own
 * text). Never for text that came from a request or from the store.
 */
export function trusted(markup: string): Html {
  return new Html(markup);
}
