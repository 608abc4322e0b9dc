//! HEAD answers with GET's headers and no body.

use vcdn_test_support::pattern;

use crate::support::{clients, fetch, get, origin_with, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_has_the_same_headers_as_get_and_no_body() {
    let file = pattern(50_000, 11);
    let cluster = origin_with(&[("movie.mp4", &file)]).await;
    for (client, version) in clients(&cluster) {
        let full = get(&client, &cluster, "/movie.mp4", &[]).await;
        let head = fetch(client.head(url(&cluster, "/movie.mp4"))).await;
        assert_eq!(head.version, version);
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty(), "HEAD has no body");
        assert_eq!(head.content_length(), file.len() as u64);
        for name in [
            "content-length",
            "etag",
            "last-modified",
            "content-type",
            "accept-ranges",
            "cache-control",
        ] {
            assert_eq!(head.header(name), full.header(name), "{name}");
        }
        assert_eq!(head.header("content-type"), "video/mp4");
        assert_eq!(head.header("accept-ranges"), "bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_with_range_gets_206_headers_and_no_body() {
    let file = pattern(50_000, 12);
    let cluster = origin_with(&[("movie.mp4", &file)]).await;
    for (client, version) in clients(&cluster) {
        let head = fetch(
            client
                .head(url(&cluster, "/movie.mp4"))
                .header("range", "bytes=100-199"),
        )
        .await;
        assert_eq!(head.version, version);
        assert_eq!(head.status, 206);
        assert_eq!(head.header("content-range"), "bytes 100-199/50000");
        assert_eq!(head.content_length(), 100);
        assert!(head.body.is_empty(), "HEAD has no body");
    }
}
