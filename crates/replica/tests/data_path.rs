//! The replica's data path against a real HTTPS test origin that can be
//! slowed, held, cut and counted: coalescing, read-while-writer, chunked
//! seeks, integrity when the origin fails or changes.

use std::time::Duration;

use http::StatusCode;
use vcdn_test_support::origin::{Content, Logged, TestOrigin};
use vcdn_test_support::{RoleHandle, TestCluster, sha256};

const MIB: u64 = 1024 * 1024;

fn config(chunk_bytes: u64, read_ahead_chunks: u64) -> vcdn_replica::Config {
    vcdn_replica::Config {
        chunk_bytes,
        read_ahead_chunks,
        ..Default::default()
    }
}

async fn setup(chunk_bytes: u64, read_ahead: u64) -> (TestCluster, TestOrigin, RoleHandle) {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    let replica = cluster
        .start_replica(&origin.url(), config(chunk_bytes, read_ahead))
        .await;
    (cluster, origin, replica)
}

/// The byte ranges the origin was asked for, as half-open intervals.
fn requested_ranges(requests: &[Logged], total: u64) -> Vec<(u64, u64)> {
    requests
        .iter()
        .map(|r| match &r.range {
            Some(range) => {
                let spec = range.strip_prefix("bytes=").expect("byte range");
                let (a, b) = spec.split_once('-').expect("first-last");
                let a: u64 = a.parse().unwrap();
                let b: u64 = b.parse().unwrap();
                (a, (b + 1).min(total))
            }
            None => (0, total),
        })
        .collect()
}

/// Asserts that every byte of the file was asked of the origin exactly once.
fn assert_each_byte_fetched_once(requests: &[Logged], total: u64) {
    let mut ranges = requested_ranges(requests, total);
    ranges.sort();
    let mut next = 0;
    for (start, end) in &ranges {
        assert_eq!(
            *start, next,
            "origin ranges overlap or leave a gap: {ranges:?}"
        );
        next = *end;
    }
    assert_eq!(
        next, total,
        "origin ranges do not cover the file: {ranges:?}"
    );
}

async fn get(client: &reqwest::Client, url: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = client.get(url);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.expect("response headers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_cold_viewers_share_one_fill_and_get_bytes_before_the_first_chunk_is_done() {
    let (cluster, origin, replica) = setup(MIB, 4).await;
    let content = Content::Virtual {
        len: 5 * MIB + 12_345,
        seed: 1,
    };
    origin.put("/movie.mp4", content.clone());
    // Every origin response stops after 64 KiB until released: no chunk can
    // complete while viewers wait for their first byte.
    origin.hold_after(64 * 1024);

    let url = format!("{}/movie.mp4", replica.url());
    let (first_bytes, mut first_bytes_rx) = tokio::sync::mpsc::channel(64);
    let mut viewers = Vec::new();
    for _ in 0..50 {
        let client = cluster.client();
        let url = url.clone();
        let first_bytes = first_bytes.clone();
        viewers.push(tokio::spawn(async move {
            let mut response = get(&client, &url, None).await;
            assert_eq!(response.status(), StatusCode::OK);
            let mut body = Vec::new();
            let first = response
                .chunk()
                .await
                .expect("first bytes")
                .expect("not empty");
            body.extend_from_slice(&first);
            first_bytes.send(()).await.unwrap();
            while let Some(piece) = response.chunk().await.expect("body") {
                body.extend_from_slice(&piece);
            }
            body
        }));
    }
    for _ in 0..50 {
        first_bytes_rx.recv().await.unwrap();
    }
    // All fifty have bytes, and the origin is still holding every response
    // at 64 KiB: nobody waited for a whole chunk.
    let requests = origin.requests_for("/movie.mp4");
    assert!(origin.body_bytes() <= 64 * 1024 * requests.len() as u64);
    assert!(
        requests.len() <= 6,
        "at most one request per chunk: {requests:?}"
    );
    origin.release();

    let expected = content.sha256();
    for viewer in viewers {
        assert_eq!(sha256(&viewer.await.unwrap()), expected);
    }
    let requests = origin.requests_for("/movie.mp4");
    assert_each_byte_fetched_once(&requests, content.len());
    assert!(
        requests
            .iter()
            .all(|r| r.status == StatusCode::PARTIAL_CONTENT)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_viewer_does_not_delay_another() {
    let (cluster, origin, replica) = setup(MIB, 2).await;
    let content = Content::Virtual {
        len: 6 * MIB,
        seed: 2,
    };
    origin.put("/v.mp4", content.clone());
    let url = format!("{}/v.mp4", replica.url());

    let stalled_client = cluster.client();
    let mut stalled = get(&stalled_client, &url, None).await;
    stalled.chunk().await.unwrap().expect("first bytes");
    // `stalled` is now never read again while the other viewer plays.

    let other = get(&cluster.client(), &url, None).await;
    let body = tokio::time::timeout(Duration::from_secs(120), other.bytes())
        .await
        .expect("the other viewer is not held up by the stalled one")
        .unwrap();
    assert_eq!(sha256(&body), content.sha256());
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_seek_into_a_large_file_fetches_one_chunk_not_the_file() {
    let chunk = 2 * MIB;
    let read_ahead = 4;
    let (cluster, origin, replica) = setup(chunk, read_ahead).await;
    let content = Content::Virtual {
        len: 100 * MIB,
        seed: 3,
    };
    origin.put("/big.mp4", content.clone());

    let start = 50_000_000u64;
    let response = get(
        &cluster.client(),
        &format!("{}/big.mp4", replica.url()),
        Some(&format!("bytes={}-{}", start, start + 999)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes {}-{}/{}", start, start + 999, content.len())
    );
    let body = response.bytes().await.unwrap();
    assert_eq!(body, content.slice(start, 1000));
    let fetched = origin.body_bytes();
    println!("cold 1000-byte seek fetched {fetched} bytes from the origin");
    assert!(
        fetched <= chunk * (1 + read_ahead),
        "fetched {fetched} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_cut_mid_chunk_aborts_viewers_and_caches_nothing() {
    let (cluster, origin, replica) = setup(MIB, 2).await;
    let content = Content::Virtual {
        len: 3 * MIB,
        seed: 4,
    };
    origin.put("/cut.mp4", content.clone());
    origin.cut_after(Some(300 * 1024));
    let url = format!("{}/cut.mp4", replica.url());

    for client in [cluster.client(), cluster.http1_client()] {
        let response = get(&client, &url, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.content_length(), Some(content.len()));
        assert!(
            response.bytes().await.is_err(),
            "a body cut at the origin must reach the viewer as an aborted transfer"
        );
    }

    origin.cut_after(None);
    let before = origin.requests_for("/cut.mp4").len();
    let response = get(&cluster.client(), &url, None).await;
    assert_ne!(response.headers()["x-cache"], "HIT");
    assert_eq!(sha256(&response.bytes().await.unwrap()), content.sha256());
    let retried = &origin.requests_for("/cut.mp4")[before..];
    assert!(
        retried.iter().any(|r| r
            .range
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=0-"))),
        "the cut first chunk is fetched again: {retried:?}"
    );
    let again = get(&cluster.client(), &url, None).await;
    assert_eq!(again.headers()["x-cache"], "HIT");
    assert_eq!(sha256(&again.bytes().await.unwrap()), content.sha256());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_file_changed_between_chunks_never_mixes_versions() {
    let (cluster, origin, replica) = setup(MIB, 0).await;
    let old = Content::Virtual {
        len: 3 * MIB,
        seed: 5,
    };
    let new = Content::Virtual {
        len: 3 * MIB,
        seed: 6,
    };
    origin.put("/live.mp4", old.clone());
    let url = format!("{}/live.mp4", replica.url());

    // Cache only the first chunk of the old version.
    let first = get(&cluster.client(), &url, Some("bytes=0-1048575")).await;
    assert_eq!(first.bytes().await.unwrap(), old.slice(0, MIB as usize));

    origin.put("/live.mp4", new.clone());
    // The first chunk is the old version on disk, the rest must come from
    // the origin, which now has another file: the body is never a mix.
    let mixed = get(&cluster.client(), &url, None).await;
    if let Ok(body) = mixed.bytes().await {
        let digest = sha256(&body);
        assert!(
            digest == old.sha256() || digest == new.sha256(),
            "a complete body is one version"
        );
    }

    let fresh = get(&cluster.client(), &url, None).await;
    assert_eq!(sha256(&fresh.bytes().await.unwrap()), new.sha256());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_without_range_support_is_filled_whole_and_served_in_ranges() {
    let (cluster, origin, replica) = setup(MIB, 2).await;
    origin.set_ranges(false);
    let content = Content::Virtual {
        len: 3 * MIB + 777,
        seed: 7,
    };
    origin.put("/plain.mp4", content.clone());
    let url = format!("{}/plain.mp4", replica.url());

    let middle = get(&cluster.client(), &url, Some("bytes=2000000-2000099")).await;
    assert_eq!(middle.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(middle.bytes().await.unwrap(), content.slice(2_000_000, 100));

    let whole = get(&cluster.client(), &url, None).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(sha256(&whole.bytes().await.unwrap()), content.sha256());
    assert_eq!(
        origin.requests_for("/plain.mp4").len(),
        1,
        "one whole-object fill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_conditionals_and_ranges_are_answered_from_the_cache() {
    let (cluster, origin, replica) = setup(MIB, 2).await;
    let content = Content::Virtual {
        len: 2 * MIB + 5,
        seed: 8,
    };
    origin.put("/c.mp4", content.clone());
    let url = format!("{}/c.mp4", replica.url());
    let client = cluster.client();

    let warm = get(&client, &url, None).await;
    let etag = warm.headers()["etag"].clone();
    assert_eq!(sha256(&warm.bytes().await.unwrap()), content.sha256());
    let origin_requests = origin.requests().len();

    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], content.len().to_string());
    assert_eq!(head.headers()["x-cache"], "HIT");
    assert_eq!(head.headers()["content-type"], "video/mp4");

    let not_modified = client
        .get(&url)
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert!(not_modified.bytes().await.unwrap().is_empty());

    let suffix = get(&client, &url, Some("bytes=-10")).await;
    assert_eq!(suffix.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        suffix.bytes().await.unwrap(),
        content.slice(content.len() - 10, 10)
    );

    let past_end = get(&client, &url, Some("bytes=99999999-")).await;
    assert_eq!(past_end.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        past_end.headers()["content-range"],
        format!("bytes */{}", content.len())
    );

    let if_range_old = client
        .get(&url)
        .header("range", "bytes=0-9")
        .header("if-range", "\"not-this-version\"")
        .send()
        .await
        .unwrap();
    assert_eq!(if_range_old.status(), StatusCode::OK);
    assert_eq!(
        sha256(&if_range_old.bytes().await.unwrap()),
        content.sha256()
    );

    assert_eq!(
        origin.requests().len(),
        origin_requests,
        "all answered from the cache"
    );
    let head = client.head(&url).send().await.unwrap();
    let status = head.headers()["cache-status"].to_str().unwrap();
    assert!(status.ends_with("; hit"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_methods_and_authorized_requests_pass_through_uncached() {
    let (cluster, origin, replica) = setup(MIB, 2).await;
    origin.put("/p.mp4", Content::Virtual { len: 1000, seed: 9 });
    let url = format!("{}/p.mp4", replica.url());
    let client = cluster.client();

    let posted = client.post(&url).body("hello").send().await.unwrap();
    assert_eq!(posted.headers()["x-cache"], "PASS");
    let private = client
        .get(&url)
        .header("authorization", "Bearer x")
        .send()
        .await
        .unwrap();
    assert_eq!(private.headers()["x-cache"], "PASS");
    assert_eq!(private.bytes().await.unwrap().len(), 1000);
    let methods: Vec<_> = origin.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, [http::Method::POST, http::Method::GET]);
    let missing = get(&client, &format!("{}/nope.mp4", replica.url()), None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_objects_are_revalidated_and_origin_changes_are_picked_up() {
    let (cluster, origin, replica) = setup(MIB, 2).await;
    origin.set_cache_control("public, max-age=0");
    let old = Content::Virtual {
        len: 2 * MIB + 1,
        seed: 10,
    };
    let new = Content::Virtual {
        len: MIB + 3,
        seed: 11,
    };
    origin.put("/r.mp4", old.clone());
    let url = format!("{}/r.mp4", replica.url());
    let client = cluster.client();

    let first = get(&client, &url, None).await;
    assert_eq!(sha256(&first.bytes().await.unwrap()), old.sha256());
    let fetched = origin.body_bytes();

    // Stale at once: the replica asks the origin, which answers 304, and the
    // stored chunks are served without fetching them again.
    let second = get(&client, &url, None).await;
    assert!(second.headers().contains_key("age"));
    assert_eq!(sha256(&second.bytes().await.unwrap()), old.sha256());
    let last = origin.requests_for("/r.mp4").pop().unwrap();
    assert_eq!(last.status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        origin.body_bytes(),
        fetched,
        "no body bytes for a revalidation"
    );

    origin.put("/r.mp4", new.clone());
    let third = get(&client, &url, None).await;
    assert_eq!(third.content_length(), Some(new.len()));
    assert_eq!(sha256(&third.bytes().await.unwrap()), new.sha256());
}
