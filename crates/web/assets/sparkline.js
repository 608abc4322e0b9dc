// Small time-series charts as inline SVG.
//
// The dashboard draws a few dozen tiny line charts once a second. A charting
// library would have to come from a CDN at run time (the dashboard must work
// on a closed network, and the page's CSP allows scripts from itself only),
// through an npm install and a bundling step (a front-end build), or as
// vendored files in this repository; none is worth it for lines this
// simple, so they are drawn here in about a hundred lines.

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 120;
const HEIGHT = 32;
const PAD = 2;

function svg(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

/**
 * A line chart of `values` (oldest first; null leaves a gap), scaled from
 * `min` to `max` (default: the largest value, at least `floor`). `label`
 * describes it for screen readers. `slots` fixes how many points the width
 * holds, so a short history starts at the right like a growing chart.
 */
export function sparkline(values, { label, min = 0, max, floor = 1, slots = values.length, className = '' } = {}) {
  const finite = values.filter((v) => v != null && Number.isFinite(v));
  const top = max ?? Math.max(floor, ...finite);
  const span = top - min || 1;
  const n = Math.max(slots, values.length, 2);
  const offset = n - values.length;
  const x = (i) => PAD + ((offset + i) * (WIDTH - 2 * PAD)) / (n - 1);
  const y = (v) => HEIGHT - PAD - ((Math.min(Math.max(v, min), top) - min) * (HEIGHT - 2 * PAD)) / span;

  const root = svg('svg', {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    preserveAspectRatio: 'none',
    class: `spark ${className}`.trim(),
    role: 'img',
    'aria-label': label ?? 'chart',
  });
  root.append(svg('line', { x1: 0, x2: WIDTH, y1: HEIGHT - PAD, y2: HEIGHT - PAD, class: 'spark-base' }));

  // One path per run of known values, so gaps stay gaps.
  let line = '';
  let area = '';
  let run = [];
  const flush = () => {
    if (run.length === 0) return;
    const points = run.map(([i, v]) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    line += `M${points.join('L')}`;
    area += `M${x(run[0][0]).toFixed(1)},${HEIGHT - PAD}L${points.join('L')}L${x(run.at(-1)[0]).toFixed(1)},${HEIGHT - PAD}Z`;
    run = [];
  };
  values.forEach((v, i) => {
    if (v == null || !Number.isFinite(v)) flush();
    else run.push([i, v]);
  });
  flush();
  if (area) root.append(svg('path', { d: area, class: 'spark-area' }));
  if (line) root.append(svg('path', { d: line, class: 'spark-line', 'vector-effect': 'non-scaling-stroke' }));
  return root;
}

/** A strip of cells, one per sample: healthy, down, or unknown. */
export function healthStrip(samples, { slots = samples.length, label } = {}) {
  const n = Math.max(slots, samples.length, 1);
  const root = svg('svg', {
    viewBox: `0 0 ${n} 1`,
    preserveAspectRatio: 'none',
    class: 'strip',
    role: 'img',
    'aria-label': label ?? 'health history',
  });
  const offset = n - samples.length;
  samples.forEach((healthy, i) => {
    root.append(svg('rect', {
      x: offset + i,
      y: 0,
      width: 1.02,
      height: 1,
      class: healthy == null ? 'strip-unknown' : healthy ? 'strip-up' : 'strip-down',
    }));
  });
  return root;
}
