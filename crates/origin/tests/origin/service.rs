//! Health and bulk downloads.

use serde_json::Value;
use vcdn_test_support::{pattern, sha256};

use crate::support::{clients, get, origin_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_reports_ok() {
    let cluster = origin_with(&[]).await;
    for (client, version) in clients(&cluster) {
        let response = get(&client, &cluster, "/healthz", &[]).await;
        assert_eq!(response.version, version);
        assert_eq!(response.status, 200);
        assert!(
            response
                .header("content-type")
                .starts_with("application/json")
        );
        let body: Value = serde_json::from_slice(&response.body).expect("JSON");
        assert_eq!(body["status"], "ok", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_file_downloads_identically_over_h2_and_http1() {
    const LEN: usize = 8 * 1024 * 1024 + 123;
    let file = pattern(LEN, 81);
    let expected = sha256(&file);
    let cluster = origin_with(&[("big.mp4", &file)]).await;
    for (client, version) in clients(&cluster) {
        let response = get(&client, &cluster, "/big.mp4", &[]).await;
        assert_eq!(response.version, version);
        assert_eq!(response.status, 200);
        assert_eq!(response.content_length(), LEN as u64);
        assert_eq!(response.body.len(), LEN);
        assert_eq!(sha256(&response.body), expected, "{version:?}");

        let start = 3 * 1024 * 1024 + 7;
        let end = 7 * 1024 * 1024 - 3;
        let part = get(
            &client,
            &cluster,
            "/big.mp4",
            &[("range", &format!("bytes={start}-{end}"))],
        )
        .await;
        assert_eq!(part.status, 206);
        assert_eq!(
            sha256(&part.body),
            sha256(&file[start..=end]),
            "{version:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_is_a_404_caches_may_remember_briefly() {
    let cluster = origin_with(&[]).await;
    for (client, _) in clients(&cluster) {
        let response = get(&client, &cluster, "/not-yet.mp4", &[]).await;
        assert_eq!(response.status, 404);
        assert_eq!(response.header("cache-control"), "max-age=10");
    }
}
