// Numbers and names as people read them.

const BYTE_UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];

/** 462502 → "452 KB" (binary multiples, short decimal). */
export function bytes(n) {
  if (n == null || !Number.isFinite(n)) return '—';
  let unit = 0;
  while (n >= 1024 && unit < BYTE_UNITS.length - 1) {
    n /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || n >= 100 ? 0 : n >= 10 ? 1 : 2;
  return `${n.toFixed(digits)} ${BYTE_UNITS[unit]}`;
}

/** Bytes per second → "3.2 MB/s". */
export function rate(n) {
  return n == null ? '—' : `${bytes(n)}/s`;
}

/** 0.934 → "93%". */
export function percent(x, digits = 0) {
  return x == null || !Number.isFinite(x) ? '—' : `${(x * 100).toFixed(digits)}%`;
}

/** A plain number with at most one decimal: 12.345 → "12.3". */
export function number(n) {
  if (n == null || !Number.isFinite(n)) return '—';
  return n >= 100 || Number.isInteger(n) ? Math.round(n).toString() : n.toFixed(1);
}

/** Seconds → "0:07", "12:03", "1:02:03". */
export function duration(seconds) {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.floor(seconds % 60).toString().padStart(2, '0');
  const m = Math.floor((seconds / 60) % 60);
  const h = Math.floor(seconds / 3600);
  return h > 0 ? `${h}:${m.toString().padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** Milliseconds ago → "just now", "12 s ago", "3 min ago". */
export function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 2) return 'just now';
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function decode(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** "/show/My%20Video.mp4" → "My Video" */
export function title(path) {
  const file = decode(path.split('/').pop() ?? path);
  return file.replace(/\.[^.]+$/, '') || file;
}

/** "/show/s1/My%20Video.mp4" → "show/s1"; "" for the top folder. */
export function folder(path) {
  return path.split('/').slice(1, -1).map(decode).join('/');
}

/** "https://localhost:8081/x.mp4" → "localhost:8081" */
export function host(url) {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

/** A stable hue for a name, so each video keeps its colour. */
export function hue(text) {
  let h = 0;
  for (const c of text) h = (h * 31 + c.codePointAt(0)) >>> 0;
  return h % 360;
}

/** Creates an element: el('a', {href: '/', class: 'x'}, 'text', child). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value == null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children.flat().filter((c) => c != null && c !== false));
  return node;
}
