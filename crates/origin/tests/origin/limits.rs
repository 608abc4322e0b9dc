//! The serving layer's limits, seen from a client: what is too big gets a
//! 4xx, and what is too slow or idle is disconnected, never left hanging.

use vcdn_test_support::TestCluster;

use crate::support::raw_exchange;

async fn origin_with_limits(edit: impl FnOnce(&mut vcdn_http::Limits)) -> TestCluster {
    let mut cluster = TestCluster::new();
    edit(&mut cluster.serving.limits);
    cluster.put_video("a.mp4", b"0123456789");
    cluster.start_origin().await;
    cluster
}

fn status(raw: &[u8]) -> Option<u16> {
    let line = raw.split(|&b| b == b'\r').next()?;
    std::str::from_utf8(line)
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_gets_431() {
    let cluster = origin_with_limits(|_| {}).await;
    let big = "x".repeat(32 * 1024);
    let request = format!(
        "GET /a.mp4 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
    );
    let raw = raw_exchange(&cluster, request.as_bytes()).await;
    assert_eq!(
        status(&raw),
        Some(431),
        "{}",
        String::from_utf8_lossy(&raw[..raw.len().min(200)])
    );
    assert!(
        !raw.windows(10).any(|w| w == b"0123456789"),
        "no file bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let cluster = origin_with_limits(|limits| limits.header_read_timeout_ms = 200).await;
    // The head never ends: no blank line.
    let raw = raw_exchange(&cluster, b"GET /a.mp4 HTTP/1.1\r\nHost: 127.0.0.1\r\n").await;
    assert_ne!(
        status(&raw),
        Some(200),
        "the server closed the connection instead"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed() {
    let cluster = origin_with_limits(|limits| limits.idle_timeout_ms = 200).await;
    // Nothing is sent after the handshake; the exchange returns once the
    // server closes.
    let raw = raw_exchange(&cluster, b"").await;
    assert!(raw.is_empty());
}
