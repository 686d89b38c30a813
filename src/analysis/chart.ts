// The cost–quality curve as a standalone SVG string, for `tiergate eval` and
// `tiergate report`. Drawn with vega-lite (compiled to a vega spec) and rendered by vega's
// headless view — no browser, no canvas, no files: the caller decides where the SVG goes.
import { compile, type TopLevelSpec } from 'vega-lite';
import * as vega from 'vega';
import type { CurvePoint } from './metrics.ts';

export interface CostQualityChartOptions {
  title?: string;
  /** What the x axis shows: total cost (default) or the share of requests served by the top tier. */
  x?: 'cost' | 'strong_share';
  /** Plot size in pixels, without axes and legend (defaults 480 × 320). */
  width?: number;
  height?: number;
}

/**
 * One line per series (points joined in x order, each point marked), quality on the y
 * axis. Series with one point — a policy, a baseline — show as a single dot; curves such
 * as the random router's or a threshold sweep show as lines. Non-finite points are left
 * out. Resolves to the SVG markup.
 */
export async function costQualitySvg(series: Array<{ name: string; points: CurvePoint[] }>, options: CostQualityChartOptions = {}): Promise<string> {
  const axis = options.x ?? 'cost';
  const values = series.flatMap((s) =>
    s.points
      .filter((p) => Number.isFinite(p[axis]) && Number.isFinite(p.quality))
      .map((p) => ({ series: s.name, x: p[axis], quality: p.quality, label: p.label ?? s.name })),
  );
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    ...(options.title ? { title: options.title } : {}),
    width: options.width ?? 480,
    height: options.height ?? 320,
    background: 'white',
    data: { values },
    mark: { type: 'line', point: { filled: true, size: 50 }, strokeWidth: 2 },
    encoding: {
      x: {
        field: 'x',
        type: 'quantitative',
        title: axis === 'cost' ? 'Total cost (USD)' : 'Requests served by the top tier',
        ...(axis === 'strong_share' ? { scale: { domain: [0, 1] }, axis: { format: '.0%' } } : { scale: { zero: false } }),
      },
      y: { field: 'quality', type: 'quantitative', title: 'Mean quality', scale: { zero: false } },
      // The legend names say what a series is ("… (upper bound)"): never cut them short.
      color: { field: 'series', type: 'nominal', title: null, sort: series.map((s) => s.name), legend: { labelLimit: 0 } },
      order: { field: 'x', type: 'quantitative' },
    },
  };
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
