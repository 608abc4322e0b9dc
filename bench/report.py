#!/usr/bin/env python3
"""Parses load generator output and renders the benchmark's results.

    report.py wrk OUT [K=V...]        wrk output (with bench's Lua report) -> JSON
    report.py h2load OUT LOG [K=V...] h2load output and its --log-file -> JSON
    report.py record K=V...           one JSON record (V=@FILE: JSON read from FILE)
    report.py brief RESULTS.jsonl     one line about the last record, for progress
    report.py render RESULTS.jsonl [--svg FILE]
                                      Markdown tables on stdout, chart to FILE

`bench/run.sh` writes one JSON object per measurement into RESULTS.jsonl;
`render` turns them into one table per figure, the targets of the
performance issue with what was measured, and an SVG chart. Standard
library only.
"""

import json
import re
import sys
from collections import OrderedDict

MiB = 1024 * 1024


# --- parsing ------------------------------------------------------------------

def parse_wrk(path):
    text = open(path).read()
    m = re.search(r"^BENCH (.*)$", text, re.M)
    if not m:
        raise SystemExit(f"no BENCH line in {path}")
    v = {k: float(x) for k, x in (kv.split("=") for kv in m.group(1).split())}
    return {"requests": v["requests"], "bytes": v["bytes"], "secs": v["duration_us"] / 1e6,
            "p50_ms": v["p50_us"] / 1000, "p99_ms": v["p99_us"] / 1000,
            "errors": v["errors"]}


def ms(token):
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1000.0)):
        if token.endswith(unit):
            return float(token[: -len(unit)]) * scale
    return float(token)


def parse_h2load(path, log):
    text = open(path).read()
    secs = float(re.search(r"^finished in ([\d.]+)s", text, re.M).group(1))
    req = re.search(r"^requests: (.*)$", text, re.M).group(1)
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (\w+)", req)}
    codes = re.search(r"^status codes: (.*)$", text, re.M).group(1)
    status = {k: int(n) for n, k in re.findall(r"(\d+) (\dxx)", codes)}
    traffic = int(re.search(r"^traffic: .*?\((\d+)\) total", text, re.M).group(1))
    alpn = re.search(r"^Application protocol: (\S+)", text, re.M)
    cipher = re.search(r"^Cipher: (\S+)", text, re.M)
    proto = re.search(r"^TLS Protocol: (\S+)", text, re.M)
    durations = []
    for line in open(log):
        parts = line.split()
        if len(parts) >= 3:
            durations.append(int(parts[2]) / 1000.0)
    durations.sort()

    def pct(p):
        if not durations:
            return None
        return durations[min(len(durations) - 1, int(p / 100 * len(durations)))]

    return {"requests": counts.get("succeeded", 0), "bytes": traffic, "secs": secs,
            "p50_ms": pct(50), "p99_ms": pct(99),
            "errors": counts.get("failed", 0) + counts.get("timeout", 0)
            + status.get("4xx", 0) + status.get("5xx", 0),
            "status_3xx": status.get("3xx", 0),
            "alpn": alpn.group(1) if alpn else None,
            "tls": f"{proto.group(1)} {cipher.group(1)}" if cipher and proto else None}


# --- formatting helpers -------------------------------------------------------

def fmt_s(seconds):
    if seconds is None:
        return "–"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def fmt_ms(value):
    return "–" if value is None else fmt_s(value / 1000.0)


def fmt_mib(n):
    if n is None:
        return "–"
    return f"{n / MiB:.1f} MiB" if n < 10 * MiB else f"{n / MiB:.0f} MiB"


def gbps(value):
    return f"{value:.1f} Gbit/s ({value * 125:,.0f} MB/s)" if value else "n/a"


def table(headers, rows, align=None):
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def origin_delta(rec):
    before, after = rec.get("origin_before") or {}, rec.get("origin_after") or {}
    return (after.get("requests", 0) - before.get("requests", 0),
            after.get("bytes", 0) - before.get("bytes", 0),
            after.get("active", 0))


# --- render -------------------------------------------------------------------

def render(path, svg_path):
    recs = [json.loads(line) for line in open(path) if line.strip()]
    by = {}
    for r in recs:
        by.setdefault(r["fig"], []).append(r)
    out = []
    machine = (by.get("machine") or [{}])[-1]
    limits = (by.get("limits") or [{}])[-1]
    targets = []

    out.append(f"Run of {machine.get('date', '?')} (vcdn {machine.get('rev', '?')}), "
               f"{machine.get('wall_s', 0) / 60:.1f} minutes.")
    out.append("")
    out.append(f"- machine: {machine.get('cpu', '?')}, {machine.get('cpus', '?')} CPUs, "
               f"{machine.get('mem_gib', '?')} GiB, Linux {machine.get('kernel', '?')}")
    out.append(f"- servers pinned to CPU {machine.get('server_cpu')}, load generators, "
               f"viewers and the slow origin to CPU {machine.get('client_cpu')}; loopback; "
               f"load average {machine.get('load_before', '?')} before the run and "
               f"{machine.get('load_after', '?')} after it (other work on the machine "
               "competes for both cores and shows most in throughput; CPU seconds per GB "
               "are the steadier figure)")
    out.append(f"- anchors: {machine.get('nginx', '?')}, {machine.get('varnish', '?')}; "
               f"clients: {machine.get('wrk', '?')}, {machine.get('h2load', '?')}, "
               f"Python {machine.get('python', '?')}")
    for ep, tls in (machine.get("tls") or {}).items():
        out.append(f"- TLS negotiated with {ep}: {tls}")
    out.append(f"- slow origin: {machine.get('origin', '?')}")
    out.append("- MB = 10^6 bytes, GB = 10^9 bytes, MiB = 2^20 bytes")
    out.append("")

    # Figure 6 first: it bounds everything else.
    out.append("### Machine limits (measured in the same run)")
    out.append("")
    aes = limits.get("aes128_gcm_MBps")
    rows = [["AES-128-GCM, one core (openssl speed -evp, 16 KiB blocks)",
             f"{aes:,.0f} MB/s" if aes else "n/a"],
            ["loopback TCP, one stream (iperf3, server and client on separate cores)",
             gbps(limits.get("loopback_Gbps"))],
            [f"loopback TCP, {limits.get('streams', '?')} streams (iperf3)",
             gbps(limits.get("loopback_many_Gbps"))]]
    out.append(table(["limit", "value"], rows, ["l", "r"]))
    out.append("")

    # Figure 1: cached hits.
    hits = OrderedDict()
    for r in by.get("hits", []):
        key = (r["object"], r["proto"], r["server"])
        agg = hits.setdefault(key, {"requests": 0, "bytes": 0, "secs": 0, "cpu_s": 0,
                                    "client_s": 0, "errors": 0, "p50": [], "p99": [],
                                    "runs": 0, "tls": r.get("tls")})
        for k in ("requests", "bytes", "secs", "cpu_s", "client_s", "errors"):
            agg[k] += r.get(k) or 0
        agg["p50"].append(r.get("p50_ms"))
        agg["p99"].append(r.get("p99_ms"))
        agg["runs"] += 1
    if hits:
        out.append("### 1. Cached hits")
        out.append("")
        rows = []
        for (obj, proto, server), a in hits.items():
            gb = a["bytes"] / 1e9
            p50 = [x for x in a["p50"] if x is not None]
            p99 = [x for x in a["p99"] if x is not None]
            a["mbps"] = a["bytes"] / 1e6 / a["secs"] if a["secs"] else 0
            a["cpu_per_gb"] = a["cpu_s"] / gb if gb else None
            rows.append([server, obj, proto, f"{a['requests'] / a['secs']:,.0f}",
                         f"{a['mbps']:,.0f}",
                         fmt_ms(sum(p50) / len(p50) if p50 else None),
                         fmt_ms(max(p99) if p99 else None),
                         f"{100 * a['cpu_s'] / a['secs']:.0f} %",
                         f"{a['cpu_per_gb']:.2f}" if a["cpu_per_gb"] else "–",
                         f"{100 * a['client_s'] / a['secs']:.0f} %", int(a["errors"])])
        out.append(table(["server", "object", "protocol", "requests/s", "MB/s", "p50",
                          "p99", "server CPU", "CPU s/GB", "client CPU", "errors"], rows,
                         ["l", "l", "l"] + ["r"] * 8))
        out.append("")
        out.append(f"{machine.get('connections', '?')} connections, "
                   f"{machine.get('hit_rounds', '?')} interleaved rounds of "
                   f"{machine.get('hit_seconds', '?')} s per row (servers take turns within "
                   "each round); MB/s counts response bytes as the client saw them; server "
                   "CPU is utime+stime of all the server's processes from /proc, as a share "
                   "of one core; p50 is the mean of the rounds' medians, p99 the worst "
                   "round's. Client CPU near 100 % means the load generator was the limit. "
                   "HTTP/2 without TLS is h2c with prior knowledge.")
        out.append("")
        for obj in ("1 MiB", "100 MiB"):
            for proto in ("HTTP/1.1", "HTTP/2"):
                v = hits.get((obj, proto, "vcdn (TLS)"))
                n = hits.get((obj, proto, "nginx proxy_cache (TLS)"))
                if v and n and n.get("cpu_per_gb") and v.get("cpu_per_gb"):
                    ok = v["cpu_per_gb"] <= 0.8 * n["cpu_per_gb"]
                    targets.append([f"hits {obj} {proto}: CPU s/GB ≤ 0.8 × nginx",
                                    f"{v['cpu_per_gb']:.2f} vs ≤ {0.8 * n['cpu_per_gb']:.2f}",
                                    "met" if ok else "missed"])
                    ok = v["mbps"] >= n["mbps"]
                    targets.append([f"hits {obj} {proto}: MB/s ≥ nginx",
                                    f"{v['mbps']:,.0f} vs {n['mbps']:,.0f}",
                                    "met" if ok else "missed"])
                if v and obj == "100 MiB" and aes:
                    ok = v["mbps"] >= 0.5 * aes
                    targets.append([f"hits {obj} {proto}: MB/s ≥ 50 % of one core's AES-128-GCM",
                                    f"{v['mbps']:,.0f} vs ≥ {0.5 * aes:,.0f}",
                                    "met" if ok else "missed"])

    chunk = machine.get("chunk_bytes", MiB)
    read_ahead = machine.get("read_ahead_chunks", 4)

    # Figure 2: cold start.
    if by.get("cold"):
        out.append("### 2. Cold start: 20 viewers at once on a cold 100 MiB object")
        out.append("")
        rows = []
        for r in by["cold"]:
            res = r.get("result", {})
            req, byts, active = origin_delta(r)
            t, d = res.get("ttfb_s", {}), res.get("done_s", {})
            lag = (res.get("client_lag_s") or {}).get("max")
            rows.append([r["server"], fmt_s(t.get("p50")), fmt_s(t.get("p99")),
                         fmt_s(t.get("max")), fmt_s(d.get("p50")), fmt_s(d.get("max")),
                         req, fmt_mib(byts) + (" (still sending)" if active else ""), fmt_s(lag),
                         f"{res.get('verified', 0)}/{res.get('viewers', '?')}"
                         + (f" ({res['error']})" if res.get("error") else "")])
            if r["server"] == "vcdn (TLS)":
                size = r.get("size", 100 * MiB)
                chunks = -(-size // chunk)
                targets.append(["cold start: first byte p99 ≤ 100 ms", fmt_s(t.get("p99")),
                                "met" if (t.get("p99") or 1e9) <= 0.1 else "missed"])
                targets.append(["cold start: one origin request per chunk",
                                f"{req} requests for {chunks} chunks",
                                "met" if req <= chunks else "missed"])
                targets.append(["cold start: origin bytes within one chunk of the size",
                                fmt_mib(byts), "met" if byts <= size + chunk else "missed"])
        out.append(table(["server", "first byte p50", "p99", "max", "complete p50", "max",
                          "origin requests", "origin bytes", "client lag (max)",
                          "sha256 verified"], rows))
        out.append("")
        out.append(f"Origin: {machine.get('origin', '?')}. The viewers connect first, then all "
                   "send their request at the same instant; first byte is the first body "
                   "byte, timed from the request. Every body is checked against the file's "
                   "sha256. Client lag is how late the viewers' own event loop ran its "
                   "timers during the run: the error bar of their timings.")
        out.append("")

    # Figure 3: cold seek.
    if by.get("seek"):
        out.append("### 3. Cold seek: 1000 bytes from the middle of a cold 100 MiB object")
        out.append("")
        rows = []
        for r in by["seek"]:
            res = r.get("result", {})
            req, byts, active = origin_delta(r)
            rows.append([r["server"], fmt_s(res.get("latency_s")), req,
                         fmt_mib(byts) + (" (still sending)" if active else ""),
                         "yes" if res.get("ok") else f"no ({res.get('status', res.get('error'))})"])
            if r["server"] == "vcdn (TLS)":
                lat = res.get("latency_s") or 1e9
                targets.append(["cold seek: latency ≤ 100 ms", fmt_s(res.get("latency_s")),
                                "met" if lat <= 0.1 else "missed"])
                limit = chunk * (1 + read_ahead)
                targets.append(["cold seek: origin bytes ≤ one chunk + read-ahead",
                                f"{fmt_mib(byts)} vs ≤ {fmt_mib(limit)}",
                                "met" if byts <= limit else "missed"])
        out.append(table(["server", "latency (last byte)", "origin requests",
                          "origin bytes (until the origin is idle)", "bytes verified"], rows))
        out.append("")

    # Figure 4: many slow viewers.
    if by.get("slow"):
        first = by["slow"][0].get("result", {})
        out.append(f"### 4. {first.get('viewers', 200)} viewers reading a cold 1 GiB object "
                   f"at {first.get('bitrate_bps', 0) / 1e6:g} Mbit/s")
        out.append("")
        rows = []
        for r in by["slow"]:
            res = r.get("result", {})
            req, byts, active = origin_delta(r)
            t = res.get("ttfb_s", {})
            rows.append([r["server"], fmt_mib(res.get("base_rss_bytes")),
                         fmt_mib(res.get("peak_rss_bytes")), fmt_mib(res.get("peak_pss_bytes")),
                         fmt_s(t.get("p50")),
                         fmt_s(t.get("p99")), fmt_s(t.get("max")),
                         fmt_s((res.get("client_lag_s") or {}).get("p99")),
                         res.get("no_first_byte", "?"),
                         f"{(res.get('bytes') or 0) / 1e6:,.0f} MB", req,
                         fmt_mib(byts) + (" (still sending)" if active else ""),
                         f"{res.get('verified', 0)}/{res.get('viewers', '?')}"
                         + (f" ({res['error']})" if res.get("error") else "")])
            if r["server"] == "vcdn (TLS)" and res.get("peak_rss_bytes"):
                targets.append(["slow viewers: peak RSS ≤ 64 MiB",
                                fmt_mib(res["peak_rss_bytes"]),
                                "met" if res["peak_rss_bytes"] <= 64 * MiB else "missed"])
        out.append(table(["server", "RSS at start", "peak RSS", "peak PSS", "first byte p50",
                          "p99", "max", "client lag p99", "no byte", "delivered",
                          "origin requests", "origin bytes", "viewers with data, verified"],
                         rows))
        out.append("")
        out.append(f"Each server is started fresh for this figure. Viewers arrive over "
                   f"{by['slow'][0].get('ramp_s', '?')} s and read for "
                   f"{first.get('duration_s', '?')} s from the first arrival, each at the "
                   "bitrate (a viewer stops reading its socket when it is ahead). RSS is the "
                   "sum over all the server's processes (shared memory, such as nginx's "
                   "cache zone, counts once per process); PSS divides shared pages among "
                   "the processes, so it counts them once. Both are sampled every 100 ms "
                   "from /proc. Every byte "
                   "received is compared with the file. 'No byte' counts viewers that got "
                   "no body byte before the end of the run.")
        out.append("")

    # Figure 5: routing.
    if by.get("routing"):
        out.append("### 5. Routing: the controller's redirects, and origin offload per strategy")
        out.append("")
        rows = []
        for r in by["routing"]:
            h1, h2, z = r.get("h1") or {}, r.get("h2") or {}, r.get("zipf") or {}
            req, byts, _ = origin_delta(r)
            served = z.get("bytes") or 0
            offload = f"{100 * (1 - byts / served):.1f} %" if served else "–"
            rows.append([r["strategy"],
                         f"{h1['requests'] / h1['secs']:,.0f}" if h1.get("secs") else "–",
                         f"{fmt_ms(h1.get('p50_ms'))} / {fmt_ms(h1.get('p99_ms'))}",
                         f"{h2['requests'] / h2['secs']:,.0f}" if h2.get("secs") else "–",
                         f"{fmt_ms(h2.get('p50_ms'))} / {fmt_ms(h2.get('p99_ms'))}",
                         fmt_s(r.get("fresh_redirect_s")),
                         fmt_s((z.get("redirect_s") or {}).get("p50")),
                         f"{z.get('verified', 0)}/{z.get('requests', '?')}",
                         req, fmt_mib(byts), fmt_mib(served), offload])
        out.append(table(["strategy", "302/s HTTP/1.1", "p50 / p99", "302/s HTTP/2",
                          "p50 / p99", "302 on a new TLS connection (p50)",
                          "302 during the Zipf run (p50)", "Zipf fetches verified",
                          "origin requests", "origin bytes", "served", "origin offload"],
                         rows, ["l"] + ["r"] * 11))
        out.append("")
        z = by["routing"][0].get("zipf") or {}
        out.append(f"The controller (pinned like the servers) fronts 3 vcdn replicas. Redirect "
                   f"rate: wrk and h2load asking for one video, the 302 not followed, "
                   f"{machine.get('connections', '?')} connections. A new viewer pays the "
                   "redirect once per video: the new-connection column is its cost (TCP and "
                   "TLS handshake to the controller plus the 302, curl, median of 20). Zipf "
                   f"workload: {z.get('requests', '?')} requests over {z.get('objects', '?')} "
                   f"videos of {fmt_mib(machine.get('zipf_object_bytes'))} (exponent "
                   f"{z.get('alpha', '?')}, {z.get('distinct', '?')} distinct videos asked "
                   f"for), {machine.get('zipf_concurrency', '?')} viewers at a time, every "
                   "302 followed to the replica and the body checked; replicas start with "
                   "empty caches for each strategy. Offload = 1 − origin bytes / bytes served.")
        out.append("")

    summary = summary_table(hits, by)
    if summary:
        out.append("### Summary")
        out.append("")
        out.append(summary)
        out.append("")

    if targets:
        out.append("### Targets of the performance issue")
        out.append("")
        out.append(table(["target (vcdn over TLS)", "measured", ""], targets, ["l", "r", "l"]))
        out.append("")

    print("\n".join(out))
    if svg_path:
        with open(svg_path, "w") as f:
            f.write(chart(hits, by, machine))


def summary_table(hits, by):
    """One column per server, one row per headline figure."""
    servers = [s for s in COLORS if any(k[2] == s for k in hits)
               or any(x.get("server") == s for f in ("cold", "seek", "slow")
                      for x in by.get(f, []))]
    if not servers:
        return ""

    def find(fig, server):
        for rec in by.get(fig, []):
            if rec.get("server") == server:
                return rec
        return None

    rows = []
    for obj, proto in (("100 MiB", "HTTP/1.1"), ("100 MiB", "HTTP/2"), ("1 MiB", "HTTP/1.1"),
                       ("1 MiB", "HTTP/2")):
        if any((obj, proto, s) in hits for s in servers):
            cells = []
            for s in servers:
                a = hits.get((obj, proto, s))
                cells.append(f"{a['mbps']:,.0f} MB/s, {a['cpu_per_gb']:.2f} CPU s/GB"
                             if a and a.get("cpu_per_gb") else "–")
            rows.append([f"cached hits, {obj}, {proto}"] + cells)
    if by.get("cold"):
        cells = []
        for s in servers:
            rec = find("cold", s)
            res = (rec or {}).get("result") or {}
            cells.append(f"{fmt_s((res.get('ttfb_s') or {}).get('p99'))} first byte (p99), "
                         f"{fmt_s((res.get('done_s') or {}).get('max'))} all done"
                         if rec and not res.get("error") else "–")
        rows.append(["cold start, 20 viewers, 100 MiB"] + cells)
    if by.get("seek"):
        cells = []
        for s in servers:
            rec = find("seek", s)
            res = (rec or {}).get("result") or {}
            cells.append(f"{fmt_s(res.get('latency_s'))}, {fmt_mib(origin_delta(rec)[1])} "
                         "from the origin" if rec and not res.get("error") else "–")
        rows.append(["cold seek, 1000 bytes"] + cells)
    if by.get("slow"):
        cells = []
        n = "?"
        for s in servers:
            rec = find("slow", s)
            res = (rec or {}).get("result") or {}
            n = res.get("viewers", n)
            if rec and not res.get("error"):
                cell = f"{fmt_mib(res.get('peak_rss_bytes'))} peak RSS"
                if res.get("no_first_byte"):
                    cell += f", {res['no_first_byte']} viewers without a byte"
                cells.append(cell)
            else:
                cells.append("–")
        rows.append([f"{n} slow viewers, cold 1 GiB"] + cells)
    return table(["figure"] + servers, rows, ["l"] + ["r"] * len(servers))


# --- chart --------------------------------------------------------------------

COLORS = {"vcdn (TLS)": "#1f6feb", "vcdn (plain)": "#6ea8fe",
          "nginx proxy_cache (TLS)": "#2da44e", "nginx slice (TLS)": "#8fd19e",
          "Varnish (plain)": "#d97706"}


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chart(hits, by, machine):
    """Horizontal bar panels, one per headline number, as SVG."""
    panels = []

    def panel(title, unit, bars, better):
        order = list(COLORS)
        bars = sorted(((label, value) for label, value in bars if value is not None),
                      key=lambda b: order.index(b[0]) if b[0] in order else len(order))
        if bars:
            panels.append((title, unit, bars, better))

    servers = list(COLORS)
    for obj, proto in (("100 MiB", "HTTP/1.1"), ("1 MiB", "HTTP/1.1")):
        panel(f"Cached hits, {obj} objects, {proto}: MB/s", "MB/s",
              [(s, hits[(obj, proto, s)]["mbps"]) for s in servers if (obj, proto, s) in hits],
              "higher is better")
        panel(f"Cached hits, {obj} objects, {proto}: server CPU seconds per GB", "CPU s/GB",
              [(s, hits[(obj, proto, s)]["cpu_per_gb"]) for s in servers
               if (obj, proto, s) in hits], "lower is better")
    panel("Cold start, 20 viewers: first byte p99 (s)", "s",
          [(r["server"], (r.get("result", {}).get("ttfb_s") or {}).get("p99"))
           for r in by.get("cold", [])], "lower is better")
    panel("Cold seek of 1000 bytes: latency (s)", "s",
          [(r["server"], r.get("result", {}).get("latency_s")) for r in by.get("seek", [])],
          "lower is better")
    panel("Cold seek of 1000 bytes: origin MiB", "MiB",
          [(r["server"], origin_delta(r)[1] / MiB) for r in by.get("seek", [])],
          "lower is better")
    slow_n = (by.get("slow") or [{}])[0].get("result", {}).get("viewers", "?")
    panel(f"{slow_n} slow viewers of a cold 1 GiB object: peak RSS (MiB)", "MiB",
          [(r["server"], (r.get("result", {}).get("peak_rss_bytes") or 0) / MiB or None)
           for r in by.get("slow", [])], "lower is better")

    width, label_w, bar_w, row_h, gap = 760, 190, 470, 18, 4
    y = 40
    body = []
    for title, unit, bars, better in panels:
        body.append(f'<text x="10" y="{y}" class="t">{esc(title)} '
                    f'<tspan class="n">({better})</tspan></text>')
        y += 8
        top = max(v for _, v in bars) or 1
        for label, value in bars:
            w = max(1, bar_w * value / top)
            color = COLORS.get(label, "#888")
            body.append(f'<text x="{label_w - 6}" y="{y + 13}" class="l">{esc(label)}</text>')
            body.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row_h}" '
                        f'fill="{color}"/>')
            text = f"{value:,.3g}" if value < 10 else f"{value:,.0f}"
            body.append(f'<text x="{label_w + w + 5:.1f}" y="{y + 13}" class="v">{text}</text>')
            y += row_h + gap
        y += 26
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
            f'viewBox="0 0 {width} {y}" font-family="sans-serif">'
            '<style>.t{font-size:14px;font-weight:bold}.n{font-weight:normal;fill:#555}'
            '.l{font-size:12px;text-anchor:end}.v{font-size:12px}</style>'
            f'<rect width="{width}" height="{y}" fill="white"/>'
            f'<text x="10" y="20" font-size="15">vcdn beside nginx and Varnish — '
            f'{esc(machine.get("date", ""))}, {esc(machine.get("cpu", ""))}, '
            f'{esc(machine.get("cpus", ""))} CPUs (one core per server)</text>')
    return head + "".join(body) + "</svg>\n"


STRING_KEYS = {"rev", "date", "kernel", "server", "strategy", "object", "proto", "cpu",
               "load_before", "load_after"}


def fields(pairs):
    """K=V arguments as a dict: V=@FILE reads JSON from FILE; numbers, null
    and JSON objects are parsed; anything else is a string."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if value.startswith("@"):
            try:
                with open(value[1:]) as f:
                    out[key] = json.loads(f.read() or "null")
            except (OSError, ValueError) as e:
                out[key] = {"error": f"unreadable result: {e}"}
            continue
        if key not in STRING_KEYS and (value[:1] in "-0123456789{[" and value
                                       or value in ("null", "true", "false")):
            try:
                out[key] = json.loads(value)
                continue
            except ValueError:
                pass
        out[key] = value
    return out


def brief(path):
    lines = [line for line in open(path) if line.strip()]
    r = json.loads(lines[-1])
    res = r.get("result") or {}
    req, byts, active = origin_delta(r)
    origin = f"origin {req} requests, {fmt_mib(byts)}" + (" (still sending)" if active else "")
    if res.get("error"):
        return f"error: {res['error']}; {origin}"
    if r["fig"] == "hits":
        secs = r.get("secs") or 1
        per_gb = r["cpu_s"] / (r["bytes"] / 1e9) if r.get("bytes") else 0
        return (f"{r['requests'] / secs:,.0f} req/s, {r['bytes'] / secs / 1e6:,.0f} MB/s, "
                f"{per_gb:.2f} CPU s/GB, errors {r.get('errors', 0):.0f}")
    if r["fig"] == "cold":
        t, d = res.get("ttfb_s", {}), res.get("done_s", {})
        return (f"first byte p50 {fmt_s(t.get('p50'))}, max {fmt_s(t.get('max'))}, complete max "
                f"{fmt_s(d.get('max'))}, verified {res.get('verified')}/{res.get('viewers')}; {origin}")
    if r["fig"] == "seek":
        return f"latency {fmt_s(res.get('latency_s'))}, ok {res.get('ok')}; {origin}"
    if r["fig"] == "slow":
        t = res.get("ttfb_s", {})
        return (f"peak RSS {fmt_mib(res.get('peak_rss_bytes'))}, first byte p50 {fmt_s(t.get('p50'))}"
                f" max {fmt_s(t.get('max'))}, no byte {res.get('no_first_byte')}, verified "
                f"{res.get('verified')}/{res.get('viewers')}; {origin}")
    if r["fig"] == "routing":
        h1, z = r.get("h1") or {}, r.get("zipf") or {}
        rate = h1["requests"] / h1["secs"] if h1.get("secs") else 0
        return (f"{rate:,.0f} redirects/s (HTTP/1.1), zipf verified {z.get('verified')}/"
                f"{z.get('requests')}, served {fmt_mib(z.get('bytes'))}; {origin}")
    return json.dumps(r)[:200]


def main(argv):
    if len(argv) >= 2 and argv[0] == "wrk":
        print(json.dumps({**fields(argv[2:]), **parse_wrk(argv[1])}))
    elif len(argv) >= 3 and argv[0] == "h2load":
        print(json.dumps({**fields(argv[3:]), **parse_h2load(argv[1], argv[2])}))
    elif argv and argv[0] == "record":
        print(json.dumps(fields(argv[1:])))
    elif len(argv) >= 2 and argv[0] == "brief":
        print(brief(argv[1]))
    elif len(argv) >= 2 and argv[0] == "render":
        svg = argv[argv.index("--svg") + 1] if "--svg" in argv else None
        render(argv[1], svg)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
