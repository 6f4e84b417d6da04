import { type Html, html, trustedHtml } from './html.ts';

const WIDTH = 96;
const HEIGHT = 22;

/**
 * A sparkline as inline SVG, drawn on the server: no script, no request per row, readable
 * by a screen reader through its label (the total and the peak). A list page of 50 tenants
 * costs 50 short `<polyline>`s, nothing else.
 *
 * @example
 * ```ts
 * html`<td>${sparkline(series.requests, 'Requests, last 24 h')}</td>`;
 * ```
 */
export function sparkline(values: readonly number[], label: string, unit = ''): Html {
  const total = values.reduce((a, b) => a + b, 0);
  const peak = values.reduce((a, b) => Math.max(a, b), 0);
  const text = `${label}: ${formatNumber(total)}${unit} in total, peak ${formatNumber(peak)}${unit}`;
  if (values.length < 2) return html`<span class="spark-empty">—</span>`;
  const step = WIDTH / (values.length - 1);
  const points = values
    .map((v, i) => {
      const y = peak > 0 ? HEIGHT - 1 - (v / peak) * (HEIGHT - 2) : HEIGHT - 1;
      return `${(i * step).toFixed(1)},${y.toFixed(1)}`;
    })
    .join(' ');
  // Only numbers reach the markup below; the label goes through html``.
  const line = trustedHtml(`<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="${points}"/>`);
  return html`<span class="spark"><svg width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="${text}"><title>${text}</title>${line}</svg><span class="spark-total">${formatNumber(total)}${unit}</span></span>`;
}

/** 1234567 → `1.2M`, 15300 → `15.3k`, 12.345 → `12.3`. */
export function formatNumber(n: number): string {
  const abs = Math.abs(n);
  if (abs >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (abs >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (abs >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  if (Number.isInteger(n)) return String(n);
  return n.toFixed(1);
}

/** Bytes for people: `1.5 MiB`. */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}
