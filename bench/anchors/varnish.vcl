# Varnish in front of the slow origin: the streaming whole-object anchor,
# on plain HTTP (Varnish Cache has no TLS). Configured as for large video
# files: one object per URL whatever the Range (the builtin hash without
# the Host), fetched whole with the Range removed and streamed to every
# viewer while it arrives (do_stream; viewers that come during the fetch
# follow it instead of waiting), ranges cut from the object (also while it
# streams, since the origin sends Content-Length), a long TTL and grace. The
# open-source Varnish cannot slice objects (that is Varnish Enterprise's
# slicer); caching each Range as its own object would fetch overlapping
# ranges again and again. bench/run.sh fills in @ORIGIN_HOST@ and
# @ORIGIN_PORT@ and starts varnishd with malloc storage, one thread pool and
# HTTP/2 enabled.
vcl 4.1;

backend origin {
    .host = "@ORIGIN_HOST@";
    .port = "@ORIGIN_PORT@";
    .connect_timeout = 2s;
    .first_byte_timeout = 60s;
    .between_bytes_timeout = 30s;
    .max_connections = 1000;
}

sub vcl_recv {
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    unset req.http.Cookie;
    return (hash);
}

sub vcl_hash {
    hash_data(req.url);
    return (lookup);
}

sub vcl_backend_fetch {
    unset bereq.http.Range;
    unset bereq.http.If-Range;
}

sub vcl_backend_response {
    set beresp.do_stream = true;
    if (beresp.status != 200) {
        # Errors are not kept (nginx here caches only 200 and 206 too).
        set beresp.ttl = 1s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    set beresp.ttl = 1d;
    set beresp.grace = 1h;
    unset beresp.http.Set-Cookie;
    return (deliver);
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
