//! Methods other than GET and HEAD, and CORS.

use reqwest::Method;
use vcdn_test_support::pattern;

use crate::support::{clients, fetch, get, origin_with, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_put_delete_are_405_with_allow_and_leave_the_file_alone() {
    let file = pattern(5000, 71);
    let cluster = origin_with(&[("movie.mp4", &file)]).await;
    for (client, version) in clients(&cluster) {
        for method in [Method::POST, Method::PUT, Method::DELETE] {
            let response = fetch(
                client
                    .request(method.clone(), url(&cluster, "/movie.mp4"))
                    .body("overwritten"),
            )
            .await;
            assert_eq!(response.version, version);
            assert_eq!(response.status, 405, "{method}");
            let allow = response.header_list("allow");
            assert!(allow.contains(&"get".to_owned()), "{method}: {allow:?}");
            assert!(allow.contains(&"head".to_owned()), "{method}: {allow:?}");
            assert!(!allow.contains(&method.as_str().to_ascii_lowercase()));
        }
        let after = get(&client, &cluster, "/movie.mp4", &[]).await;
        assert_eq!(after.status, 200);
        assert!(after.body == file, "the file is unchanged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_to_the_catalog_is_405_with_allow() {
    let cluster = origin_with(&[]).await;
    let response = fetch(cluster.client().post(url(&cluster, "/api/videos"))).await;
    assert_eq!(response.status, 405);
    assert!(response.header_list("allow").contains(&"get".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_for_a_range_request_is_allowed() {
    let cluster = origin_with(&[("movie.mp4", &pattern(100, 72))]).await;
    for (client, version) in clients(&cluster) {
        let response = fetch(
            client
                .request(Method::OPTIONS, url(&cluster, "/movie.mp4"))
                .header("origin", "https://player.example")
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "range"),
        )
        .await;
        assert_eq!(response.version, version);
        assert!(response.status.is_success(), "{:?}", response);
        assert_eq!(response.header("access-control-allow-origin"), "*");
        let methods = response.header_list("access-control-allow-methods");
        assert!(methods.contains(&"get".to_owned()), "{methods:?}");
        let headers = response.header_list("access-control-allow-headers");
        assert!(headers.contains(&"range".to_owned()), "{headers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_get_exposes_range_and_cache_headers() {
    let file = pattern(1000, 73);
    let cluster = origin_with(&[("movie.mp4", &file)]).await;
    for (client, version) in clients(&cluster) {
        let response = get(
            &client,
            &cluster,
            "/movie.mp4",
            &[("origin", "https://player.example"), ("range", "bytes=0-9")],
        )
        .await;
        assert_eq!(response.version, version);
        assert_eq!(response.status, 206);
        assert!(response.body == file[..10]);
        assert_eq!(response.header("access-control-allow-origin"), "*");
        let exposed = response.header_list("access-control-expose-headers");
        for name in ["content-range", "etag", "x-cache"] {
            assert!(exposed.contains(&name.to_owned()), "{name}: {exposed:?}");
        }
    }
}
