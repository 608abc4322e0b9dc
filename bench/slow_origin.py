#!/usr/bin/env python3
"""A slow origin for the benchmarks: files of a folder over HTTP/1.1.

It behaves like a distant origin behind a thin link, the same for every
cache in front of it:

- every response waits ``--first-byte-ms`` before its headers are sent;
- all response bodies together leave at most ``--rate-bytes`` per second
  (one link shared by every connection, as a real uplink is);
- paths under ``--fast-prefix`` (``/fast/`` by default) skip both, for
  filling caches quickly before hit benchmarks.

It honours single byte ranges (``bytes=a-b``, ``a-``, ``-n``), ``If-Range``
and ``If-None-Match`` with its ETag, keeps connections alive, and counts
requests and body bytes sent. ``GET /__stats`` answers those counts as
JSON (not counted themselves)::

    {"requests": 12, "bytes": 104857600, "active": 0,
     "paths": {"/x.bin": {"requests": 12, "bytes": 104857600}}}

Plain HTTP by default (Varnish cannot fetch over TLS); ``--cert`` and
``--key`` serve HTTPS instead. Standard library only.

    python3 bench/slow_origin.py --listen 127.0.0.1:9000 --dir videos \\
        --first-byte-ms 50 --rate-bytes 20971520
"""

import argparse
import asyncio
import email.utils
import json
import os
import signal
import ssl
import sys
import urllib.parse

SLOW_PIECE = 64 * 1024
FAST_PIECE = 256 * 1024
MAX_HEAD = 16 * 1024


class Link:
    """A link of `rate` bytes per second shared by every response.

    Each piece reserves the next free slot of the link and is written when
    its slot starts, so concurrent responses interleave piece by piece and
    together never pass the rate. Timers fire late by a millisecond or so:
    while the link is busy, a slot that started up to `SLACK` seconds ago is
    still used (the lateness is caught up, so the long-run rate is the
    configured one); a link idle for longer starts afresh, with no burst.
    """

    SLACK = 0.02

    def __init__(self, rate):
        self.rate = rate
        self.next_free = 0.0

    async def take(self, n):
        if self.rate <= 0:
            return
        now = asyncio.get_running_loop().time()
        start = self.next_free if self.next_free >= now - self.SLACK else now
        self.next_free = start + n / self.rate
        if start > now:
            await asyncio.sleep(start - now)


class Stats:
    def __init__(self):
        self.requests = 0
        self.bytes = 0
        self.active = 0
        self.paths = {}

    def request(self, path):
        self.requests += 1
        self.paths.setdefault(path, {"requests": 0, "bytes": 0})["requests"] += 1

    def sent(self, path, n):
        self.bytes += n
        self.paths[path]["bytes"] += n

    def json(self):
        return json.dumps(
            {"requests": self.requests, "bytes": self.bytes, "active": self.active,
             "paths": self.paths}
        ).encode()


def parse_range(value, size):
    """The (first, last) of a single byte range, None to serve the whole
    file, or "unsatisfiable"."""
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    spec = value[len("bytes="):].strip()
    first, sep, last = spec.partition("-")
    if not sep:
        return None
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return "unsatisfiable"
            return (max(0, size - n), size - 1)
        first = int(first)
        last = int(last) if last else size - 1
    except ValueError:
        return None
    if first >= size:
        return "unsatisfiable"
    if first > last:
        return None
    return (first, min(last, size - 1))


class Origin:
    def __init__(self, args):
        self.root = os.path.realpath(args.dir)
        self.first_byte = args.first_byte_ms / 1000.0
        self.link = Link(args.rate_bytes)
        self.fast_prefix = args.fast_prefix
        self.cache_control = args.cache_control
        self.stats = Stats()

    def resolve(self, path):
        """The file a URL path names, or None. Paths under the fast prefix
        name the same files as without it."""
        if self.fast_prefix and path.startswith(self.fast_prefix):
            path = "/" + path[len(self.fast_prefix):]
        name = urllib.parse.unquote(path).lstrip("/")
        if not name or "\0" in name:
            return None
        full = os.path.realpath(os.path.join(self.root, name))
        if not full.startswith(self.root + os.sep) or not os.path.isfile(full):
            return None
        return full

    async def handle(self, reader, writer):
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                        ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    await self.simple(writer, 400, b"bad request\n", close=True)
                    return
                method, target, version = parts
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                close = (headers.get("connection", "").lower() == "close"
                         or version == "HTTP/1.0")
                path = urllib.parse.urlsplit(target).path
                if path == "/__stats":
                    await self.simple(writer, 200, self.stats.json(),
                                      ctype="application/json", close=close)
                elif method not in ("GET", "HEAD"):
                    await self.simple(writer, 405, b"method not allowed\n", close=close)
                else:
                    await self.serve(writer, method, path, headers, close)
                if close:
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    async def simple(self, writer, status, body, ctype="text/plain", close=False):
        head = (f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"Cache-Control: no-store\r\n"
                f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n")
        writer.write(head.encode() + body)
        await writer.drain()

    async def serve(self, writer, method, path, headers, close):
        fast = bool(self.fast_prefix) and path.startswith(self.fast_prefix)
        self.stats.request(path)
        self.stats.active += 1
        try:
            if not fast and self.first_byte > 0:
                await asyncio.sleep(self.first_byte)
            full = self.resolve(path)
            if full is None:
                await self.simple(writer, 404, b"not found\n", close=close)
                return
            st = os.stat(full)
            size = st.st_size
            etag = f'"{st.st_ino:x}-{size:x}-{st.st_mtime_ns:x}"'
            common = [
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Server", "slow-origin"),
                ("Accept-Ranges", "bytes"),
                ("ETag", etag),
                ("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True)),
                ("Cache-Control", self.cache_control),
                ("Connection", "close" if close else "keep-alive"),
            ]
            inm = headers.get("if-none-match")
            if inm and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
                await self.send_head(writer, 304, common)
                return
            rng = parse_range(headers.get("range"), size)
            if_range = headers.get("if-range")
            if rng is not None and if_range is not None and if_range.strip() != etag:
                rng = None
            if rng == "unsatisfiable":
                await self.send_head(writer, 416, common + [
                    ("Content-Range", f"bytes */{size}"), ("Content-Length", "0")])
                return
            ctype = "video/mp4" if full.endswith(".mp4") else "application/octet-stream"
            if rng is None:
                status, first, last = 200, 0, size - 1
                extra = []
            else:
                status, (first, last) = 206, rng
                extra = [("Content-Range", f"bytes {first}-{last}/{size}")]
            count = last - first + 1 if size else 0
            await self.send_head(writer, status, common + extra + [
                ("Content-Type", ctype), ("Content-Length", str(count))])
            if method == "HEAD" or count == 0:
                return
            await self.send_body(writer, path, full, first, count, fast)
        finally:
            self.stats.active -= 1

    async def send_head(self, writer, status, headers):
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}"]
        lines += [f"{k}: {v}" for k, v in headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()

    async def send_body(self, writer, path, full, offset, count, fast):
        piece = FAST_PIECE if fast else SLOW_PIECE
        fd = os.open(full, os.O_RDONLY)
        try:
            while count > 0:
                n = min(piece, count)
                if not fast:
                    await self.link.take(n)
                data = os.pread(fd, n, offset)
                if not data:
                    raise ConnectionError("file shrank")
                writer.write(data)
                await writer.drain()
                self.stats.sent(path, len(data))
                offset += len(data)
                count -= len(data)
        finally:
            os.close(fd)


REASONS = {200: "OK", 206: "Partial Content", 304: "Not Modified", 400: "Bad Request",
           404: "Not Found", 405: "Method Not Allowed", 416: "Range Not Satisfiable"}


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:9000", help="HOST:PORT")
    parser.add_argument("--dir", required=True, help="folder of the files to serve")
    parser.add_argument("--first-byte-ms", type=float, default=50.0)
    parser.add_argument("--rate-bytes", type=float, default=20 * 1024 * 1024,
                        help="bytes per second shared by all slow responses (0: no limit)")
    parser.add_argument("--fast-prefix", default="/fast/",
                        help="paths under this prefix are neither delayed nor limited")
    parser.add_argument("--cache-control", default="public, max-age=86400")
    parser.add_argument("--cert", help="PEM certificate chain: serve HTTPS")
    parser.add_argument("--key", help="PEM private key of --cert")
    args = parser.parse_args()

    origin = Origin(args)
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    host, _, port = args.listen.rpartition(":")
    server = await asyncio.start_server(origin.handle, host.strip("[]"), int(port),
                                        ssl=context, limit=MAX_HEAD, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()
    print(f"slow origin on {'https' if context else 'http'}://{bound[0]}:{bound[1]} "
          f"(first byte {args.first_byte_ms:g} ms, link {args.rate_bytes / 2**20:g} MiB/s)",
          flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
