// The cluster dashboard: the controller's /api/cluster, long-polled (the
// controller answers as soon as a replica changes state, else after a
// second), as one card per replica (health, requests/s, throughput, hit
// ratio, cache fill, active streams, each with its last two minutes) and
// the cluster's origin offload.
//
// The controller takes a dead replica out after two failed probes half a
// second apart, about a second after its death; the long poll shows it here
// at once. A replica whose last probe failed but that is not yet out is
// shown as "failing".

import { el, bytes, rate, percent, number, ago, host } from './format.js';
import { sparkline, healthStrip } from './sparkline.js';

/** Least time between two requests: the controller paces the long poll,
 *  this only bounds the rate if it answers at once (an older controller). */
const MIN_POLL_MS = 250;
/** Wait after a failed request. */
const RETRY_MS = 1000;
/** Samples a chart holds at least: a short history starts at the right
 *  and grows to the left, up to all the controller keeps (120, one a
 *  second). */
const MIN_SLOTS = 30;

function stateOf(replica) {
  if (replica.state === 'healthy' && replica.reason) return 'failing';
  return replica.state;
}

const STATE_TEXT = {
  healthy: 'healthy',
  failing: 'probe failing',
  overloaded: 'overloaded',
  down: 'down',
  unknown: 'starting',
};

function metric(name, value, chart, note) {
  return el('div', { class: 'metric' }, el('dt', {}, name), el('dd', {}, value), chart, note ? el('span', { class: 'metric-note' }, note) : null);
}

function replicaCard(replica, now) {
  const state = stateOf(replica);
  const history = replica.history ?? [];
  const series = (key) => history.map((s) => s[key] ?? null);
  const slots = Math.max(MIN_SLOTS, history.length);
  const stale = !replica.healthy && state !== 'overloaded';
  const since = replica.state_since_unix_ms ? ago(now - replica.state_since_unix_ms) : '';
  const fill = replica.cache_fullness;
  const bar = el('span', { class: 'bar', 'aria-hidden': 'true' }, el('span', { class: 'bar-fill' }));
  bar.firstChild.style.width = `${Math.min(100, Math.max(0, (fill ?? 0) * 100)).toFixed(1)}%`;

  return [
    el(
      'div',
      { class: 'replica-head' },
      el('span', { class: `state state-${state}` }, STATE_TEXT[state] ?? state),
      el('h2', {}, replica.name),
      el('span', { class: 'muted' }, host(replica.url)),
    ),
    el(
      'p',
      { class: 'replica-why' },
      replica.reason ? `${replica.reason} \u00b7 ` : '',
      `${state === 'failing' ? 'healthy' : STATE_TEXT[state] ?? state} since ${since}`,
      replica.probe_latency_ms != null && !stale ? ` \u00b7 probe ${number(replica.probe_latency_ms)} ms` : '',
      stale ? ' \u00b7 figures are the last known' : '',
    ),
    el(
      'dl',
      { class: `metrics${stale ? ' stale' : ''}` },
      metric('Requests/s', number(replica.requests_per_sec), sparkline(series('requests_per_sec'), { slots, label: 'requests per second, last two minutes' })),
      metric('Throughput', rate(replica.bytes_out_per_sec), sparkline(series('bytes_out_per_sec'), { slots, floor: 1024, label: 'bytes per second, last two minutes' })),
      metric('Hit ratio', percent(replica.hit_ratio), sparkline(series('hit_ratio'), { slots, max: 1, label: 'hit ratio, last two minutes' })),
      metric('Active streams', number(replica.active_streams), sparkline(series('active_streams'), { slots, label: 'active streams, last two minutes' })),
      metric(
        'Cache fill',
        percent(fill, fill != null && fill < 0.1 ? 1 : 0),
        bar,
        `${bytes(replica.cache_bytes)} of ${bytes(replica.cache_max_bytes)}`,
      ),
      metric('Viewers routed', number(replica.routed_total), null),
    ),
    el(
      'div',
      { class: 'health-row' },
      el('span', { class: 'muted small' }, 'Health'),
      healthStrip(history.map((s) => s.healthy), { slots, label: 'health, last two minutes' }),
    ),
  ];
}

/** Sums the replicas' histories, aligned on their latest samples. */
function totals(replicas, key) {
  const length = Math.max(0, ...replicas.map((r) => r.history?.length ?? 0));
  const sum = new Array(length).fill(null);
  for (const r of replicas) {
    const h = r.history ?? [];
    h.forEach((s, i) => {
      const v = s[key];
      if (v == null) return;
      const at = length - h.length + i;
      sum[at] = (sum[at] ?? 0) + v;
    });
  }
  return sum;
}

function tile(name, value, chart, note) {
  return el('div', { class: 'tile-stat' }, el('span', { class: 'tile-name' }, name), el('strong', {}, value), chart, note ? el('span', { class: 'muted small' }, note) : null);
}

export function showDashboard(root, controller) {
  const updated = el('span', { class: 'muted updated', 'aria-live': 'off' });
  const banner = el('p', { class: 'notice error', role: 'alert', hidden: true });
  const summary = el('div', { class: 'summary' });
  const list = el('ul', { class: 'replicas', 'aria-label': 'Replicas' });
  root.append(
    el(
      'section',
      { class: 'dashboard' },
      el('div', { class: 'dash-head' }, el('h1', {}, 'Cluster'), updated),
      banner,
      summary,
      list,
      el('p', { class: 'muted small' }, 'Figures from the controller\u2019s /api/cluster, polled every second; charts show the last two minutes.'),
    ),
  );

  const abort = new AbortController();
  const offload = [];
  const cards = new Map();
  let timer = 0;
  let lastOk = 0;

  function render(cluster) {
    const now = Date.now();
    const replicas = cluster.replicas ?? [];
    offload.push(cluster.origin_offload ?? null);
    if (offload.length > 120) offload.shift();
    const slots = Math.max(MIN_SLOTS, ...replicas.map((r) => r.history?.length ?? 0), offload.length);

    const requests = replicas.reduce((sum, r) => sum + (r.healthy ? r.requests_per_sec ?? 0 : 0), 0);
    const throughput = replicas.reduce((sum, r) => sum + (r.healthy ? r.bytes_out_per_sec ?? 0 : 0), 0);
    summary.dataset.healthy = String(cluster.healthy);
    summary.replaceChildren(
      tile('Replicas healthy', `${cluster.healthy} of ${cluster.total}`, healthStrip(replicas.map((r) => r.healthy), { label: 'replicas' }), `${cluster.strategy}, ${cluster.mode}`),
      tile('Origin offload', percent(cluster.origin_offload, 1), sparkline(offload, { slots, max: 1, label: 'origin offload, last two minutes' }), `${bytes(cluster.origin_bytes_total)} from the origin for ${bytes(cluster.bytes_served_total)} served`),
      tile('Requests/s', number(requests), sparkline(totals(replicas, 'requests_per_sec'), { slots, label: 'requests per second, all replicas' })),
      tile('Throughput', rate(throughput), sparkline(totals(replicas, 'bytes_out_per_sec'), { slots, floor: 1024, label: 'bytes per second, all replicas' })),
    );

    const seen = new Set();
    for (const replica of replicas) {
      seen.add(replica.url);
      let card = cards.get(replica.url);
      if (!card) {
        card = el('li', { class: 'replica' });
        cards.set(replica.url, card);
      }
      const state = stateOf(replica);
      card.className = `replica replica-${state}`;
      card.dataset.url = replica.url;
      card.dataset.name = replica.name;
      card.dataset.state = state;
      card.replaceChildren(...replicaCard(replica, now));
    }
    for (const [url, card] of cards) {
      if (!seen.has(url)) {
        card.remove();
        cards.delete(url);
      }
    }
    // Keep the controller's order; appending moves existing cards.
    list.append(...replicas.map((r) => cards.get(r.url)));
    if (replicas.length === 0) {
      list.replaceChildren(el('li', { class: 'notice' }, 'No replica has joined the controller.'));
    }
  }

  let generation;
  async function poll() {
    const started = Date.now();
    let wait = MIN_POLL_MS;
    try {
      const cluster = await controller.cluster({ changedAfter: generation, signal: abort.signal });
      generation = cluster.generation;
      render(cluster);
      lastOk = Date.now();
      banner.hidden = true;
      root.querySelector('.dashboard')?.classList.remove('offline');
    } catch (e) {
      if (abort.signal.aborted) return;
      banner.hidden = false;
      banner.textContent = `Cannot reach the controller at ${controller.base}: ${e.message}. Showing the last figures; retrying every second.`;
      root.querySelector('.dashboard')?.classList.add('offline');
      generation = undefined;
      wait = RETRY_MS;
    }
    updated.textContent = lastOk ? `updated ${ago(Date.now() - lastOk)}` : '';
    if (!abort.signal.aborted) timer = setTimeout(poll, Math.max(0, wait - (Date.now() - started)));
  }
  poll();

  return {
    stop() {
      abort.abort();
      clearTimeout(timer);
    },
  };
}
