//! Byte ranges over HTTP/2 and HTTP/1.1.

use vcdn_test_support::{TestCluster, pattern};

use crate::support::{Fetched, clients, get, leaks_file_bytes, origin_with};

const LEN: usize = 100_000;

async fn video() -> (TestCluster, Vec<u8>) {
    let bytes = pattern(LEN, 7);
    let cluster = origin_with(&[("video.mp4", &bytes)]).await;
    (cluster, bytes)
}

/// Asserts a 206 carrying exactly `file[start..=end]`.
fn assert_partial(response: &Fetched, file: &[u8], start: usize, end: usize) {
    assert_eq!(response.status, 206, "{response:?}");
    assert_eq!(
        response.header("content-range"),
        format!("bytes {start}-{end}/{}", file.len())
    );
    assert_eq!(response.content_length(), (end - start + 1) as u64);
    assert_eq!(response.header("accept-ranges"), "bytes");
    assert_eq!(response.body.len(), end - start + 1);
    assert!(
        response.body == file[start..=end],
        "body is not bytes {start}-{end} of the file"
    );
}

/// Asserts a 200 carrying the whole file and no Content-Range.
fn assert_whole(response: &Fetched, file: &[u8]) {
    assert_eq!(response.status, 200, "{:?}", response.headers);
    assert!(
        response.maybe_header("content-range").is_none(),
        "a 200 has no Content-Range"
    );
    assert_eq!(response.content_length(), file.len() as u64);
    assert_eq!(response.header("accept-ranges"), "bytes");
    assert!(response.body == file, "body is not the whole file");
}

async fn check_range(value: &str, start: usize, end: usize) {
    let (cluster, file) = video().await;
    for (client, version) in clients(&cluster) {
        let response = get(&client, &cluster, "/video.mp4", &[("range", value)]).await;
        assert_eq!(response.version, version);
        assert_partial(&response, &file, start, end);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_byte_range_returns_one_byte() {
    check_range("bytes=0-0", 0, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middle_range_returns_exactly_those_bytes() {
    check_range("bytes=12345-67890", 12_345, 67_890).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_byte_range_returns_the_final_byte() {
    check_range(&format!("bytes={}-{}", LEN - 1, LEN - 1), LEN - 1, LEN - 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suffix_range_returns_the_last_bytes() {
    check_range("bytes=-100", LEN - 100, LEN - 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_ended_range_returns_the_rest_of_the_file() {
    check_range("bytes=99000-", 99_000, LEN - 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_ending_past_end_of_file_is_clamped() {
    check_range("bytes=90000-5000000", 90_000, LEN - 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suffix_longer_than_the_file_returns_the_whole_file_as_206() {
    check_range("bytes=-5000000", 0, LEN - 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_past_end_of_file_is_416() {
    let (cluster, file) = video().await;
    for (client, version) in clients(&cluster) {
        for value in [
            format!("bytes={LEN}-"),
            format!("bytes={}-{}", LEN + 10, LEN + 20),
        ] {
            let response = get(&client, &cluster, "/video.mp4", &[("range", &value)]).await;
            assert_eq!(response.version, version);
            assert_eq!(response.status, 416, "{value}");
            assert_eq!(response.header("content-range"), format!("bytes */{LEN}"));
            assert!(
                !leaks_file_bytes(&response.body, &file),
                "a 416 carries no bytes of the file ({value})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_range_is_ignored_and_the_whole_file_is_served() {
    let (cluster, file) = video().await;
    for (client, version) in clients(&cluster) {
        for value in ["bytes=abc", "bytes=5-1", "items=0-1"] {
            let response = get(&client, &cluster, "/video.mp4", &[("range", value)]).await;
            assert_eq!(response.version, version);
            assert_whole(&response, &file);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_ranges_get_the_whole_file_with_200() {
    let (cluster, file) = video().await;
    for (client, version) in clients(&cluster) {
        let response = get(
            &client,
            &cluster,
            "/video.mp4",
            &[("range", "bytes=0-9,500-599")],
        )
        .await;
        assert_eq!(response.version, version);
        assert_whole(&response, &file);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_without_range_returns_the_whole_file_and_advertises_ranges() {
    let (cluster, file) = video().await;
    for (client, version) in clients(&cluster) {
        let response = get(&client, &cluster, "/video.mp4", &[]).await;
        assert_eq!(response.version, version);
        assert_whole(&response, &file);
    }
}
