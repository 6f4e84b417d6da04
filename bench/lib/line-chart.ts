/**
 * Line charts for benchmark results: an SVG built here from the numbers (stacked panels
 * sharing one x axis), rendered to PNG by resvg (`@resvg/resvg-js`, a Rust SVG renderer
 * shipped as a prebuilt binary in its npm package: no browser, no install script).
 */
import { Resvg } from '@resvg/resvg-js';

/** One line of a panel: its label, colour and a y value per x (NaN leaves a gap). */
export interface Series {
  readonly label: string;
  readonly color: string;
  readonly values: readonly number[];
}

/** One panel: a title, the unit of its y axis and its lines. */
export interface Panel {
  readonly title: string;
  readonly unit: string;
  readonly series: readonly Series[];
  /** The y axis starts at zero unless told otherwise. */
  readonly fromZero?: boolean;
}

export interface ChartInput {
  readonly title: string;
  /** Lines under the title (conditions of the run). */
  readonly subtitle?: readonly string[];
  readonly xLabel: string;
  readonly x: readonly number[];
  readonly panels: readonly Panel[];
}

const WIDTH = 1200;
const PANEL_HEIGHT = 230;
const TOP = 90;
const GAP = 40;
const LEFT = 80;
const RIGHT = 200;
const BOTTOM = 50;

const xmlText = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A round step for about `ticks` intervals over `span`. */
function niceStep(span: number, ticks: number): number {
  const raw = span / ticks || 1;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const normalized = raw / magnitude;
  return (normalized <= 1 ? 1 : normalized <= 2 ? 2 : normalized <= 5 ? 5 : 10) * magnitude;
}

const label = (n: number) => (Math.abs(n) >= 1000 ? n.toLocaleString('en-US') : String(Number(n.toPrecision(4))));

function panelSvg(panel: Panel, x: readonly number[], top: number, xMin: number, xMax: number): string {
  const plotWidth = WIDTH - LEFT - RIGHT;
  const finite = panel.series.flatMap((s) => s.values.filter(Number.isFinite));
  let yMin = panel.fromZero === false && finite.length ? Math.min(...finite) : 0;
  let yMax = finite.length ? Math.max(...finite) : 1;
  if (yMax === yMin) yMax = yMin + 1;
  const step = niceStep(yMax - yMin, 5);
  yMin = Math.floor(yMin / step) * step;
  yMax = Math.ceil(yMax / step) * step;
  const sx = (v: number) => LEFT + ((v - xMin) / (xMax - xMin || 1)) * plotWidth;
  const sy = (v: number) => top + PANEL_HEIGHT - ((v - yMin) / (yMax - yMin)) * PANEL_HEIGHT;
  const parts: string[] = [
    `<text x="${LEFT}" y="${top - 8}" font-size="15" font-weight="bold">${xmlText(panel.title)}</text>`,
    `<rect x="${LEFT}" y="${top}" width="${plotWidth}" height="${PANEL_HEIGHT}" fill="none" stroke="#999"/>`,
  ];
  for (let v = yMin; v <= yMax + step / 2; v += step) {
    const y = sy(v).toFixed(1);
    parts.push(`<line x1="${LEFT}" x2="${LEFT + plotWidth}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${LEFT - 6}" y="${y}" font-size="12" text-anchor="end" dy="4">${label(v)}</text>`);
  }
  parts.push(
    `<text x="18" y="${top + PANEL_HEIGHT / 2}" font-size="12" transform="rotate(-90 18 ${top + PANEL_HEIGHT / 2})" text-anchor="middle">${xmlText(panel.unit)}</text>`,
  );
  panel.series.forEach((s, i) => {
    let d = '';
    let pen = false;
    s.values.forEach((v, j) => {
      if (!Number.isFinite(v)) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${sx(x[j] as number).toFixed(1)},${sy(v).toFixed(1)} `;
      pen = true;
    });
    parts.push(`<path d="${d.trim()}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
    const ly = top + 16 + i * 20;
    parts.push(
      `<line x1="${WIDTH - RIGHT + 12}" x2="${WIDTH - RIGHT + 36}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="3"/>`,
    );
    parts.push(`<text x="${WIDTH - RIGHT + 42}" y="${ly + 4}" font-size="12">${xmlText(s.label)}</text>`);
  });
  return parts.join('\n');
}

/** The chart as SVG text. */
export function chartSvg(input: ChartInput): string {
  const height = TOP + input.panels.length * (PANEL_HEIGHT + GAP) + BOTTOM;
  const xMin = input.x.length ? Math.min(...input.x) : 0;
  const xMax = input.x.length ? Math.max(...input.x) : 1;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" font-family="DejaVu Sans, sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${LEFT}" y="26" font-size="18" font-weight="bold">${xmlText(input.title)}</text>`,
  ];
  (input.subtitle ?? []).forEach((line, i) => {
    parts.push(`<text x="${LEFT}" y="${46 + i * 16}" font-size="12" fill="#555">${xmlText(line)}</text>`);
  });
  input.panels.forEach((panel, i) => {
    parts.push(panelSvg(panel, input.x, TOP + 10 + i * (PANEL_HEIGHT + GAP), xMin, xMax));
  });
  const axisY = TOP + 10 + input.panels.length * (PANEL_HEIGHT + GAP) - GAP + 18;
  const plotWidth = WIDTH - LEFT - RIGHT;
  const step = niceStep(xMax - xMin, 10);
  for (let v = Math.ceil(xMin / step) * step; v <= xMax; v += step) {
    const xPos = (LEFT + ((v - xMin) / (xMax - xMin || 1)) * plotWidth).toFixed(1);
    parts.push(`<text x="${xPos}" y="${axisY}" font-size="12" text-anchor="middle">${label(v)}</text>`);
  }
  parts.push(
    `<text x="${LEFT + plotWidth / 2}" y="${axisY + 22}" font-size="13" text-anchor="middle">${xmlText(input.xLabel)}</text>`,
  );
  parts.push('</svg>');
  return parts.join('\n');
}

/** The chart as PNG bytes. */
export function chartPng(input: ChartInput): Buffer {
  return new Resvg(chartSvg(input), { font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } })
    .render()
    .asPng();
}
