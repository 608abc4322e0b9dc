//! Validators and conditional requests.

use std::time::Duration;

use vcdn_test_support::{TestCluster, pattern};

use crate::support::{Fetched, clients, get, origin_with};

const LEN: usize = 20_000;

/// A running origin serving one file, and that file's validators.
struct Served {
    cluster: TestCluster,
    file: Vec<u8>,
    etag: String,
    last_modified: String,
}

async fn served() -> Served {
    let file = pattern(LEN, 21);
    let cluster = origin_with(&[("clip.mp4", &file)]).await;
    let first = get(&cluster.client(), &cluster, "/clip.mp4", &[]).await;
    assert_eq!(first.status, 200);
    Served {
        etag: first.header("etag").to_owned(),
        last_modified: first.header("last-modified").to_owned(),
        cluster,
        file,
    }
}

impl Served {
    /// GET /clip.mp4 with `headers` over both protocols.
    async fn get_both(&self, headers: &[(&str, &str)]) -> Vec<Fetched> {
        let mut out = Vec::new();
        for (client, version) in clients(&self.cluster) {
            let response = get(&client, &self.cluster, "/clip.mp4", headers).await;
            assert_eq!(response.version, version);
            out.push(response);
        }
        out
    }
}

fn assert_not_modified(response: &Fetched, etag: &str) {
    assert_eq!(response.status, 304, "{:?}", response.headers);
    assert!(response.body.is_empty(), "a 304 has no body");
    assert_eq!(response.header("etag"), etag);
}

fn assert_whole(response: &Fetched, file: &[u8]) {
    assert_eq!(response.status, 200, "{:?}", response.headers);
    assert!(response.body == file, "body is not the whole file");
}

fn shifted(http_date: &str, by: Duration, earlier: bool) -> String {
    let time = httpdate::parse_http_date(http_date).expect("HTTP date");
    httpdate::fmt_http_date(if earlier { time - by } else { time + by })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etag_is_a_quoted_strong_tag() {
    let s = served().await;
    assert!(
        s.etag.starts_with('"') && s.etag.ends_with('"') && s.etag.len() > 2,
        "{}",
        s.etag
    );
    assert!(!s.etag.starts_with("W/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_with_current_etag_is_304() {
    let s = served().await;
    for response in s.get_both(&[("if-none-match", &s.etag)]).await {
        assert_not_modified(&response, &s.etag);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_modified_never_announces_a_different_length() {
    // RFC 9110 §8.6: a 304 MUST NOT carry a Content-Length unless it equals
    // the length a 200 would have; a cache merging the 304's headers into
    // its stored response would otherwise record the wrong length.
    let s = served().await;
    for response in s.get_both(&[("if-none-match", &s.etag)]).await {
        assert_eq!(response.status, 304);
        if let Some(length) = response.maybe_header("content-length") {
            assert_eq!(
                length,
                LEN.to_string(),
                "{:?}: a 304 for a {LEN}-byte file says Content-Length: {length}",
                response.version
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_star_is_304() {
    let s = served().await;
    for response in s.get_both(&[("if-none-match", "*")]).await {
        assert_not_modified(&response, &s.etag);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_with_a_list_containing_current_etag_is_304() {
    let s = served().await;
    let list = format!("\"something-else\", {}", s.etag);
    for response in s.get_both(&[("if-none-match", &list)]).await {
        assert_not_modified(&response, &s.etag);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_with_another_tag_is_200_with_the_file() {
    let s = served().await;
    for response in s.get_both(&[("if-none-match", "\"not-this-one\"")]).await {
        assert_whole(&response, &s.file);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_form_of_current_etag_matches_if_none_match() {
    let s = served().await;
    let weak = format!("W/{}", s.etag);
    for response in s.get_both(&[("if-none-match", &weak)]).await {
        assert_not_modified(&response, &s.etag);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_modified_since_equal_to_last_modified_is_304() {
    let s = served().await;
    for response in s.get_both(&[("if-modified-since", &s.last_modified)]).await {
        assert_not_modified(&response, &s.etag);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_modified_since_older_than_last_modified_is_200() {
    let s = served().await;
    let older = shifted(&s.last_modified, Duration::from_secs(3600), true);
    for response in s.get_both(&[("if-modified-since", &older)]).await {
        assert_whole(&response, &s.file);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_takes_precedence_over_if_modified_since() {
    let s = served().await;
    // A tag that does not match wins over a date that would give 304.
    let later = shifted(&s.last_modified, Duration::from_secs(3600), false);
    for response in s
        .get_both(&[
            ("if-none-match", "\"not-this-one\""),
            ("if-modified-since", &later),
        ])
        .await
    {
        assert_whole(&response, &s.file);
    }
    // A matching tag wins over a date that would give 200.
    let older = shifted(&s.last_modified, Duration::from_secs(3600), true);
    for response in s
        .get_both(&[("if-none-match", &s.etag), ("if-modified-since", &older)])
        .await
    {
        assert_not_modified(&response, &s.etag);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_with_a_wrong_tag_is_412() {
    let s = served().await;
    for response in s.get_both(&[("if-match", "\"not-this-one\"")]).await {
        assert_eq!(response.status, 412);
        assert!(
            !crate::support::leaks_file_bytes(&response.body, &s.file),
            "a 412 carries no bytes of the file"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_unmodified_since_older_than_last_modified_is_412() {
    let s = served().await;
    let older = shifted(&s.last_modified, Duration::from_secs(3600), true);
    for response in s.get_both(&[("if-unmodified-since", &older)]).await {
        assert_eq!(response.status, 412);
        assert!(!crate::support::leaks_file_bytes(&response.body, &s.file));
    }
    for response in s
        .get_both(&[("if-unmodified-since", &s.last_modified)])
        .await
    {
        assert_whole(&response, &s.file);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_with_the_current_tag_serves_the_file() {
    let s = served().await;
    for response in s.get_both(&[("if-match", &s.etag)]).await {
        assert_whole(&response, &s.file);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_range_with_current_etag_is_206() {
    let s = served().await;
    for response in s
        .get_both(&[("range", "bytes=1000-1999"), ("if-range", &s.etag)])
        .await
    {
        assert_eq!(response.status, 206);
        assert_eq!(
            response.header("content-range"),
            format!("bytes 1000-1999/{LEN}")
        );
        assert!(response.body == s.file[1000..2000]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_range_with_last_modified_date_is_206() {
    let s = served().await;
    for response in s
        .get_both(&[("range", "bytes=-10"), ("if-range", &s.last_modified)])
        .await
    {
        assert_eq!(response.status, 206);
        assert!(response.body == s.file[LEN - 10..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_range_with_a_weak_etag_gets_the_whole_file() {
    // If-Range needs a strong match (RFC 9110 §13.1.5).
    let s = served().await;
    let weak = format!("W/{}", s.etag);
    for response in s
        .get_both(&[("range", "bytes=0-9"), ("if-range", &weak)])
        .await
    {
        assert_whole(&response, &s.file);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_range_with_an_old_etag_gets_the_whole_new_file() {
    let s = served().await;
    let new = pattern(LEN + 1000, 22);
    s.cluster.put_video("clip.mp4", &new);
    for response in s
        .get_both(&[("range", "bytes=1000-1999"), ("if-range", &s.etag)])
        .await
    {
        assert_eq!(response.status, 200);
        assert!(response.maybe_header("content-range").is_none());
        assert_ne!(response.header("etag"), s.etag);
        assert!(response.body == new, "body is the whole new file");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_file_gets_a_new_etag_and_old_tag_no_longer_matches() {
    let s = served().await;
    // Same length, different bytes, written in place right away: only the
    // content (and the modification time) differ.
    let new = pattern(LEN, 23);
    s.cluster.put_video("clip.mp4", &new);
    for response in s.get_both(&[("if-none-match", &s.etag)]).await {
        assert_eq!(response.status, 200, "the old tag must not give 304");
        assert_ne!(response.header("etag"), s.etag, "the ETag changed");
        assert!(response.body == new, "body is the new content");
    }
}
