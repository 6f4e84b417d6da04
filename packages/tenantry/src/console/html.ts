/**
 * HTML built from TypeScript templates, escaped exactly once: every value interpolated into
 * {@link html} is escaped unless it is itself {@link Html} (already built, so already
 * escaped). Nothing else in the console writes markup, so there is one place where text
 * becomes HTML.
 */

const ENTITIES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
  '`': '&#96;',
};

/**
 * Escapes text for an HTML text node or a quoted attribute value.
 *
 * @example
 * ```ts
 * escapeHtml('<b>"x"</b>'); // '&lt;b&gt;&quot;x&quot;&lt;/b&gt;'
 * ```
 */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => ENTITIES[c] as string);
}

/**
 * Markup that is already safe: the result of {@link html}. Only this module makes one from
 * a string (see {@link trustedHtml}), so a string can never pass as markup by mistake.
 *
 * @example
 * ```ts
 * const cell: Html = html`<td>${tenant.slug}</td>`;
 * ```
 */
export class Html {
  readonly #text: string;
  private constructor(text: string) {
    this.#text = text;
  }
  /** @internal */
  static of(text: string): Html {
    return new Html(text);
  }
  toString(): string {
    return this.#text;
  }
}

/** What {@link html} accepts: text (escaped), numbers, markup, nothing, or lists of them. */
export type HtmlValue = Html | string | number | boolean | null | undefined | readonly HtmlValue[];

function render(value: HtmlValue): string {
  if (value === null || value === undefined || value === false || value === true) return '';
  if (value instanceof Html) return value.toString();
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

/**
 * Tagged template: the literal parts are markup, every interpolated value is escaped
 * (arrays are joined, `null`/`undefined`/booleans render nothing, {@link Html} is kept).
 *
 * @example
 * ```ts
 * const row = html`<tr><td>${tenant.slug}</td><td>${tenant.name}</td></tr>`;
 * const table = html`<table>${tenants.map((t) => html`<tr><td>${t.slug}</td></tr>`)}</table>`;
 * ```
 */
export function html(strings: TemplateStringsArray, ...values: readonly HtmlValue[]): Html {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += render(values[i] as HtmlValue) + (strings[i + 1] ?? '');
  return Html.of(out);
}

/**
 * Markup from code the console controls (an SVG path built from numbers). Never pass text
 * that came from a request or the database.
 *
 * @example
 * ```ts
 * trustedHtml('<svg viewBox="0 0 10 10"></svg>');
 * ```
 */
export function trustedHtml(markup: string): Html {
  return Html.of(markup);
}
