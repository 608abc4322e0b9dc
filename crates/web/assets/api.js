// Talking to vcdn from the browser: the page's own /config.json, the
// controller's JSON API, and small probes of a replica.
//
// Every call has a time limit: a dead host must turn into an error the
// player can act on, never into a request that hangs.

/** An HTTP or network failure, with a message fit to show a person. */
export class ApiError extends Error {
  constructor(message, { status = 0, network = false } = {}) {
    super(message);
    this.status = status;
    // True when no HTTP answer arrived at all (refused, reset, timed out).
    this.network = network;
  }
}

/** fetch() with a time limit; network failures become ApiError. */
export async function fetchWithin(url, { timeoutMs = 5000, signal, ...init } = {}) {
  const limit = AbortSignal.timeout(timeoutMs);
  const combined = signal ? AbortSignal.any([signal, limit]) : limit;
  try {
    return await fetch(url, { ...init, signal: combined });
  } catch (e) {
    if (signal?.aborted) throw e;
    const why = limit.aborted ? `no answer within ${timeoutMs} ms` : 'connection failed';
    throw new ApiError(`${new URL(url).host}: ${why}`, { network: true });
  }
}

async function json(url, options) {
  const response = await fetchWithin(url, { cache: 'no-store', ...options });
  if (!response.ok) {
    let detail = '';
    try {
      detail = (await response.json()).error ?? '';
    } catch {
      // Not JSON: the status says enough.
    }
    throw new ApiError(`${new URL(url).host}: HTTP ${response.status}${detail ? ` (${detail})` : ''}`, {
      status: response.status,
    });
  }
  return response.json();
}

/** The page's settings: `{controller, title}`. */
export async function loadConfig() {
  return json('/config.json', { timeoutMs: 5000 });
}

/** The controller's API. */
export class Controller {
  constructor(baseUrl) {
    this.base = baseUrl.replace(/\/+$/, '');
  }

  /** `{videos: [{path, size, content_type, etag, modified, duration_seconds}], truncated}` */
  videos(options) {
    return json(`${this.base}/api/videos`, { timeoutMs: 8000, ...options });
  }

  /** Where a new viewer of `path` (percent-encoded, leading slash) should go:
   *  `{replica, url, strategy, fallback}`. Counts as a viewer routed. */
  route(path, options) {
    return json(`${this.base}/api/route${path}`, { timeoutMs: 2000, ...options });
  }

  /** Every replica's health, load and history, and the origin offload.
   *  With `changedAfter` (a previous answer's `generation`) the controller
   *  answers as soon as a replica changes state, or after a second. */
  cluster({ changedAfter, ...options } = {}) {
    const query = changedAfter === undefined ? '' : `?changed_after=${changedAfter}`;
    return json(`${this.base}/api/cluster${query}`, { timeoutMs: 3000, ...options });
  }
}

/** Is the server at `url`'s origin up? Asks its /healthz, which every vcdn
 *  role answers and which replicas do not count as a viewer's request.
 *  Resolves `{ok, name, network}`; never rejects. */
export async function checkAlive(url, timeoutMs = 1500) {
  const healthz = `${new URL(url).origin}/healthz`;
  try {
    const response = await fetchWithin(healthz, { cache: 'no-store', timeoutMs });
    if (!response.ok) return { ok: false, network: false, why: `HTTP ${response.status}` };
    const body = await response.json().catch(() => ({}));
    return { ok: body.status === 'ok', name: body.name, network: false, why: body.status };
  } catch (e) {
    return { ok: false, network: true, why: e.message };
  }
}

/** Asks the replica behind `url` for one byte at `offset` and reports how it
 *  served it: `{servedBy, cache, total}` from X-Served-By, X-Cache and
 *  Content-Range (readable because vcdn exposes them to scripts).
 *
 *  The browser's own HTTP cache is bypassed (`no-store`), or it would answer
 *  with an old copy of the headers. `Cache-Control: no-transform` is set so
 *  the browser does not add `Cache-Control: no-cache` itself, which would
 *  make the replica revalidate with the origin on every probe. */
export async function probeCache(url, offset = 0, timeoutMs = 1500) {
  const response = await fetchWithin(url, {
    cache: 'no-store',
    timeoutMs,
    headers: { Range: `bytes=${offset}-${offset}`, 'Cache-Control': 'no-transform' },
  });
  // Read the byte so the connection is free for the next request.
  await response.arrayBuffer().catch(() => null);
  if (!response.ok) {
    throw new ApiError(`${new URL(url).host}: HTTP ${response.status}`, { status: response.status });
  }
  const range = response.headers.get('content-range') ?? '';
  const total = Number(range.split('/')[1]);
  return {
    servedBy: response.headers.get('x-served-by'),
    cache: response.headers.get('x-cache'),
    total: Number.isFinite(total) && total > 0 ? total : null,
  };
}
