#!/usr/bin/env python3
"""Video viewers for the benchmarks: HTTP/1.1 over TCP or TLS, standard
library only. Every byte received is checked against the local copy of the
file, and each command prints one JSON object on stdout.

    cold   N viewers connect, then ask for the whole object at the same
           instant: time to first body byte, completion time, sha256.
    seek   one range request: latency to its last byte, bytes checked.
    slow   N viewers arrive over a ramp and read at a video bitrate for a
           while: time to first byte, bytes checked, and (with --watch-pid)
           the peak RSS of that process and all its descendants.
    zipf   requests for objects drawn from a Zipf law, each sent to a
           controller first, whose 302 is followed to the replica (the
           redirect is timed on its own; it is not followed automatically).

Times are from the moment the request is written, on a connection that is
already open (connect and TLS handshake are reported apart).
"""

import argparse
import asyncio
import hashlib
import json
import os
import random
import ssl
import sys
import time
import urllib.parse

READ = 64 * 1024


class HttpError(Exception):
    pass


def percentile(values, p):
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def summary(values):
    return {"p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values) if values else None, "n": len(values)}


class Conn:
    """One HTTP/1.1 connection (keep-alive)."""

    def __init__(self, url, cafile, limit=READ):
        parts = urllib.parse.urlsplit(url)
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.cafile, self.limit = cafile, limit
        self.reader = self.writer = None
        self.connect_s = None

    @property
    def origin(self):
        return (self.scheme, self.host, self.port)

    async def open(self):
        ctx = None
        if self.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.cafile)
            ctx.set_alpn_protocols(["http/1.1"])
        t0 = time.perf_counter()
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, ssl=ctx, server_hostname=self.host if ctx else None,
            limit=self.limit)
        self.connect_s = time.perf_counter() - t0
        return self

    def close(self):
        if self.writer:
            self.writer.close()
            self.writer = None

    def send(self, path, headers=()):
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 "User-Agent: vcdn-bench-viewer", "Accept-Encoding: identity"]
        lines += [f"{k}: {v}" for k, v in headers]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def head(self):
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return status, headers

    async def body(self, headers):
        """Yields the body in pieces (Content-Length, chunked, or to close)."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    return
                while size > 0:
                    data = await self.reader.read(min(size, READ))
                    if not data:
                        raise HttpError("connection closed inside a chunk")
                    size -= len(data)
                    yield data
                await self.reader.readexactly(2)
        elif "content-length" in headers:
            left = int(headers["content-length"])
            while left > 0:
                data = await self.reader.read(min(left, READ))
                if not data:
                    raise HttpError(f"connection closed with {left} body bytes missing")
                left -= len(data)
                yield data
        else:
            while True:
                data = await self.reader.read(READ)
                if not data:
                    return
                yield data


class Expected:
    """The local copy of the object, to check received bytes against."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size
        self._sha = None

    def sha256(self):
        if self._sha is None:
            h = hashlib.sha256()
            at = 0
            while at < self.size:
                data = os.pread(self.fd, 4 << 20, at)
                h.update(data)
                at += len(data)
            self._sha = h.hexdigest()
        return self._sha

    def matches(self, offset, data):
        return os.pread(self.fd, len(data), offset) == data


class LoopLag:
    """How late this client's event loop runs timers: the precision of its
    own timings (a busy client would add its lag to every first byte)."""

    def __init__(self):
        self.samples = []
        self.task = asyncio.create_task(self.run())

    async def run(self):
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            self.samples.append(time.perf_counter() - t0 - 0.01)

    def stop(self):
        self.task.cancel()
        return summary(self.samples)


def cache_status(headers):
    return headers.get("x-cache") or headers.get("x-cache-status")


# --- cold ---------------------------------------------------------------------

async def cold(args):
    want = Expected(args.expect)
    path = urllib.parse.urlsplit(args.url).path
    conns = await asyncio.gather(*(Conn(args.url, args.cafile).open() for _ in range(args.n)))
    start = asyncio.Event()

    async def viewer(conn):
        await start.wait()
        t0 = time.perf_counter()
        conn.send(path)
        status, headers = await conn.head()
        h = hashlib.sha256()
        first = None
        size = 0
        async for data in conn.body(headers):
            if first is None:
                first = time.perf_counter() - t0
            h.update(data)
            size += len(data)
        done = time.perf_counter() - t0
        ok = status == 200 and size == want.size and h.hexdigest() == want.sha256()
        return {"ttfb": first, "done": done, "ok": ok, "status": status, "bytes": size,
                "cache": cache_status(headers)}

    tasks = [asyncio.create_task(viewer(c)) for c in conns]
    want.sha256()  # hashed before the clock starts
    lag = LoopLag()
    start.set()
    results = []
    for t in tasks:
        try:
            results.append(await t)
        except Exception as e:  # noqa: BLE001 - reported, not raised
            results.append({"ttfb": None, "done": None, "ok": False, "error": repr(e)})
    for c in conns:
        c.close()
    ttfb = [r["ttfb"] for r in results if r.get("ttfb") is not None]
    done = [r["done"] for r in results if r.get("done") is not None]
    return {"viewers": args.n, "verified": sum(r["ok"] for r in results),
            "ttfb_s": summary(ttfb), "done_s": summary(done), "client_lag_s": lag.stop(),
            "connect_s": summary([c.connect_s for c in conns]),
            "cache": sorted({str(r.get("cache")) for r in results}),
            "errors": [r["error"] for r in results if "error" in r][:3]}


# --- seek ---------------------------------------------------------------------

async def seek(args):
    want = Expected(args.expect)
    first = args.start if args.start is not None else want.size // 2
    last = first + args.length - 1
    conn = await Conn(args.url, args.cafile).open()
    t0 = time.perf_counter()
    conn.send(urllib.parse.urlsplit(args.url).path, [("Range", f"bytes={first}-{last}")])
    status, headers = await conn.head()
    body = b""
    ttfb = None
    async for data in conn.body(headers):
        if ttfb is None:
            ttfb = time.perf_counter() - t0
        body += data
    latency = time.perf_counter() - t0
    conn.close()
    ok = (status == 206 and len(body) == args.length and want.matches(first, body)
          and headers.get("content-range") == f"bytes {first}-{last}/{want.size}")
    return {"range": [first, last], "status": status, "ok": ok, "ttfb_s": ttfb,
            "latency_s": latency, "connect_s": conn.connect_s, "cache": cache_status(headers)}


# --- slow ---------------------------------------------------------------------

def tree_memory(root):
    """Resident memory of `root` and all its descendants, in bytes: the
    sum of their RSS, and the sum of their PSS (shared pages divided among
    the processes sharing them, so shared memory counts once)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    rss = pss = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            pass
        todo.extend(children.get(pid, []))
    return rss, pss


async def slow(args):
    want = Expected(args.expect)
    path = urllib.parse.urlsplit(args.url).path
    rate = args.bitrate / 8.0
    t_start = time.perf_counter()
    deadline = t_start + args.duration
    peak = {"rss": 0, "pss": 0, "samples": 0}
    base_rss, base_pss = tree_memory(args.watch_pid) if args.watch_pid else (None, None)

    async def watch():
        while time.perf_counter() < deadline:
            rss, pss = tree_memory(args.watch_pid)
            peak["rss"] = max(peak["rss"], rss)
            peak["pss"] = max(peak["pss"], pss)
            peak["samples"] += 1
            await asyncio.sleep(args.sample_s)

    async def viewer(i):
        await asyncio.sleep(args.ramp * i / args.n)
        res = {"ttfb": None, "bytes": 0, "ok": True}
        conn = Conn(args.url, args.cafile, limit=args.client_buffer)
        try:
            await asyncio.wait_for(conn.open(), max(0.1, deadline - time.perf_counter()))
            t0 = time.perf_counter()
            conn.send(path)
            status, headers = await asyncio.wait_for(conn.head(), max(0.1, deadline - t0))
            res["status"] = status
            if status != 200:
                res["ok"] = False
                return res
            body = conn.body(headers)
            while True:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    data = await asyncio.wait_for(body.__anext__(), left)
                except StopAsyncIteration:
                    break
                if res["ttfb"] is None:
                    res["ttfb"] = time.perf_counter() - t0
                if not want.matches(res["bytes"], data):
                    res["ok"] = False
                    break
                res["bytes"] += len(data)
                # Read at the bitrate: wait until the bytes read so far are due.
                due = t0 + res["ttfb"] + res["bytes"] / rate
                pause = min(due, deadline) - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
        except asyncio.TimeoutError:
            pass
        except Exception as e:  # noqa: BLE001 - reported, not raised
            res["ok"] = False
            res["error"] = repr(e)
        finally:
            conn.close()
        return res

    watcher = asyncio.create_task(watch()) if args.watch_pid else None
    lag = LoopLag()
    results = await asyncio.gather(*(viewer(i) for i in range(args.n)))
    if watcher:
        await watcher
    client_lag = lag.stop()
    ttfb = [r["ttfb"] for r in results if r["ttfb"] is not None]
    return {"viewers": args.n, "bitrate_bps": args.bitrate, "duration_s": args.duration,
            "ttfb_s": summary(ttfb), "client_lag_s": client_lag,
            "no_first_byte": sum(r["ttfb"] is None for r in results),
            "verified": sum(r["ok"] and r["ttfb"] is not None for r in results),
            "bytes": sum(r["bytes"] for r in results),
            "peak_rss_bytes": peak["rss"] or None, "base_rss_bytes": base_rss,
            "peak_pss_bytes": peak["pss"] or None, "base_pss_bytes": base_pss,
            "rss_samples": peak["samples"],
            "errors": [r["error"] for r in results if "error" in r][:3]}


# --- zipf ---------------------------------------------------------------------

def zipf_sampler(count, alpha, rng):
    weights = [1.0 / (k ** alpha) for k in range(1, count + 1)]
    total = sum(weights)
    cum, acc = [], 0.0
    for w in weights:
        acc += w / total
        cum.append(acc)

    def draw():
        x = rng.random()
        lo, hi = 0, count - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if cum[mid] < x:
                lo = mid + 1
            else:
                hi = mid
        return lo
    return draw


async def zipf(args):
    want = Expected(args.expect)
    rng = random.Random(args.seed)
    draw = zipf_sampler(args.objects, args.alpha, rng)
    names = [args.pattern.format(i) for i in (draw() for _ in range(args.requests))]
    queue = asyncio.Queue()
    for name in names:
        queue.put_nowait(name)
    redirects, fetches, errors = [], [], []
    served = {"bytes": 0, "ok": 0, "per_replica": {}}

    async def worker():
        conns = {}

        async def conn_for(url):
            probe = Conn(url, args.cafile)
            conn = conns.get(probe.origin)
            if conn is None:
                conn = conns[probe.origin] = await probe.open()
            return conn

        while True:
            try:
                name = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            try:
                ctl = await conn_for(args.controller)
                t0 = time.perf_counter()
                ctl.send(name)
                status, headers = await ctl.head()
                async for _ in ctl.body(headers):
                    pass
                redirects.append(time.perf_counter() - t0)
                if status != 302 or "location" not in headers:
                    raise HttpError(f"controller answered {status}")
                location = urllib.parse.urljoin(args.controller, headers["location"])
                rep = await conn_for(location)
                t1 = time.perf_counter()
                rep.send(urllib.parse.urlsplit(location).path)
                status, headers = await rep.head()
                h, size = hashlib.sha256(), 0
                async for data in rep.body(headers):
                    h.update(data)
                    size += len(data)
                fetches.append(time.perf_counter() - t1)
                if status == 200 and size == want.size and h.hexdigest() == want.sha256():
                    served["ok"] += 1
                served["bytes"] += size
                key = f"{rep.host}:{rep.port}"
                served["per_replica"][key] = served["per_replica"].get(key, 0) + 1
            except Exception as e:  # noqa: BLE001 - reported, not raised
                errors.append(repr(e))
                for c in conns.values():
                    c.close()
                conns.clear()
        for c in conns.values():
            c.close()

    want.sha256()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return {"requests": args.requests, "objects": args.objects, "alpha": args.alpha,
            "distinct": len(set(names)), "verified": served["ok"], "bytes": served["bytes"],
            "per_replica": served["per_replica"], "redirect_s": summary(redirects),
            "fetch_s": summary(fetches), "wall_s": time.perf_counter() - t0,
            "errors": errors[:3], "error_count": len(errors)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cafile", help="CA certificate (PEM) for https URLs")
    p.add_argument("--timeout", type=float, default=120.0, help="bound on the whole command")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("cold")
    c.add_argument("--url", required=True)
    c.add_argument("--n", type=int, default=20)
    c.add_argument("--expect", required=True, help="local copy of the object")

    s = sub.add_parser("seek")
    s.add_argument("--url", required=True)
    s.add_argument("--expect", required=True)
    s.add_argument("--start", type=int, help="first byte (default: the middle)")
    s.add_argument("--length", type=int, default=1000)

    w = sub.add_parser("slow")
    w.add_argument("--url", required=True)
    w.add_argument("--expect", required=True)
    w.add_argument("--n", type=int, default=200)
    w.add_argument("--bitrate", type=float, default=4e6, help="bits per second per viewer")
    w.add_argument("--duration", type=float, default=20.0, help="seconds from the first arrival")
    w.add_argument("--ramp", type=float, default=2.0, help="seconds over which viewers arrive")
    w.add_argument("--client-buffer", type=int, default=READ,
                   help="bytes a viewer buffers before it stops reading the socket")
    w.add_argument("--watch-pid", type=int, help="sample the RSS of this process tree")
    w.add_argument("--sample-s", type=float, default=0.1)

    z = sub.add_parser("zipf")
    z.add_argument("--controller", required=True, help="base URL of the controller")
    z.add_argument("--pattern", default="/fast/z{:03d}.bin", help="path of object i")
    z.add_argument("--objects", type=int, default=300)
    z.add_argument("--alpha", type=float, default=0.9)
    z.add_argument("--requests", type=int, default=2000)
    z.add_argument("--concurrency", type=int, default=8)
    z.add_argument("--seed", type=int, default=8)
    z.add_argument("--expect", required=True, help="local copy (every object has these bytes)")

    args = p.parse_args()
    run = {"cold": cold, "seek": seek, "slow": slow, "zipf": zipf}[args.cmd]

    async def bounded():
        return await asyncio.wait_for(run(args), args.timeout)

    try:
        result = asyncio.run(bounded())
    except asyncio.TimeoutError:
        result = {"error": f"timed out after {args.timeout:g} s"}
    except Exception as e:  # noqa: BLE001 - one JSON line, whatever happens
        result = {"error": repr(e)}
    print(json.dumps(result))
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
