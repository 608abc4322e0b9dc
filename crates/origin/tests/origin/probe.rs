use crate::support::*;
use vcdn_test_support::pattern;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe() {
    let f = pattern(1000, 1);
    let cluster = origin_with(&[("a.mp4", &f), ("empty.mp4", b""), ("sub/x.mp4", b"xx")]).await;
    for (c, _) in clients(&cluster) {
        let r = get(&c, &cluster, "/a.mp4", &[]).await;
        let etag = r.header("etag").to_owned();
        for h in [
            vec![("if-none-match", etag.as_str())],
            vec![("range", "bytes=2000-")],
            vec![("if-match", "\"x\"")],
            vec![("range", "bytes=0-1"), ("if-range", "W/\"x\"")],
        ] {
            let r = get(&c, &cluster, "/a.mp4", &h).await;
            eprintln!(
                "{:?} {:?} {} {:?} body={:?}",
                h,
                r.version,
                r.status,
                r.headers,
                String::from_utf8_lossy(&r.body)
            );
        }
        for (p, h) in [
            ("/empty.mp4", vec![]),
            ("/empty.mp4", vec![("range", "bytes=0-")]),
            ("/empty.mp4", vec![("range", "bytes=-5")]),
            ("/a.mp4/", vec![]),
            ("/a.mp4?x=1", vec![]),
            ("/sub%2fx.mp4", vec![]),
        ] {
            let r = get(&c, &cluster, p, &h).await;
            eprintln!(
                "{p} {:?} {:?} {} {:?} body={:?}",
                h,
                r.version,
                r.status,
                r.headers,
                String::from_utf8_lossy(&r.body)
            );
        }
        let r = fetch(c.head(url(&cluster, "/api/videos"))).await;
        eprintln!("HEAD catalog {} {:?}", r.status, r.headers);
        let r = fetch(c.head(url(&cluster, "/nope.mp4"))).await;
        eprintln!("HEAD missing {} {:?} {:?}", r.status, r.headers, r.body);
    }
    for p in [
        "/../x",
        "/%2e%2e/x",
        "/%5c",
        "/a%00",
        "//etc/passwd",
        "/%ff",
        "/a.mp4#frag",
        "/a b.mp4",
        "*",
    ] {
        let r = raw_get(&cluster, p).await;
        eprintln!("RAW {p}: {}", String::from_utf8_lossy(&r.raw));
    }
}
