//! Crash safety of the real `vcdn replica` process: it is killed with
//! SIGKILL while chunk fills are in flight, restarted on the same cache
//! folder, and must then serve every file byte for byte. Viewers of the
//! killed process may see an aborted transfer, never a wrong byte or a body
//! that ends cleanly but short.
//!
//! Only served bytes are checked, not HIT/MISS (the `X-Cache` values after
//! each restart are printed): whatever the cache keeps from a killed run,
//! what it serves must be exactly the origin's bytes. After every restart
//! every file of every round so far is fetched whole, so chunks kept from
//! earlier rounds are checked again after each later crash.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::sync::watch;
use vcdn_test_support::origin::{Content, TestOrigin};
use vcdn_test_support::{Protocol, TestCluster, client_trusting, sha256};

use common::ReplicaProcess;

const MIB: u64 = 1024 * 1024;
/// The origin's link, shared by all its responses: the fills of a round take
/// a few seconds, so kills land while chunks are half written.
const ORIGIN_RATE: u64 = 8 * MIB;
/// Where `HeldMidChunk` pauses every origin response: inside its first
/// chunk for any chunk size from 1 MiB up.
const HOLD_AT: u64 = MIB / 2 + 12_345;
/// Guards against a hang only.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// When, in a round, the replica is killed.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// The origin has received the first discovery request.
    DuringDiscovery,
    /// Some viewer has received its first body bytes.
    FirstBodyBytes,
    /// Every origin response is paused [`HOLD_AT`] bytes into its body, so
    /// part files are half written; killed once three are paused.
    HeldMidChunk,
    /// The origin has received this many requests in the round.
    OriginRequests(usize),
    /// The viewers have received this many bytes in all.
    ViewerBytes(u64),
    /// One viewer has its whole body.
    FirstViewerDone,
}

const ROUNDS: [KillPoint; 7] = [
    KillPoint::FirstBodyBytes,
    KillPoint::DuringDiscovery,
    KillPoint::HeldMidChunk,
    KillPoint::ViewerBytes(4 * MIB),
    KillPoint::OriginRequests(6),
    KillPoint::FirstViewerDone,
    KillPoint::ViewerBytes(24 * MIB),
];

/// One file of the origin and its expected digest.
#[derive(Clone)]
struct Video {
    path: String,
    content: Content,
    sha256: String,
}

/// Three files per round (new paths, so fills are cold even though the
/// cache survives restarts), with a short last chunk each.
fn round_videos(round: usize) -> Vec<Video> {
    [6 * MIB + 1234, 9 * MIB + 77, 12 * MIB - 5]
        .into_iter()
        .enumerate()
        .map(|(i, len)| {
            let content = Content::Virtual {
                len,
                seed: 1000 + 10 * round as u64 + i as u64,
            };
            Video {
                path: format!("/round-{round}/video-{i}.mp4"),
                sha256: content.sha256(),
                content,
            }
        })
        .collect()
}

/// What a viewer asks for.
#[derive(Debug, Clone, Copy)]
enum Want {
    Full,
    From(u64),
    Span(u64, u64),
    Suffix(u64),
}

impl Want {
    fn header(self) -> Option<String> {
        match self {
            Want::Full => None,
            Want::From(a) => Some(format!("bytes={a}-")),
            Want::Span(a, b) => Some(format!("bytes={a}-{b}")),
            Want::Suffix(n) => Some(format!("bytes=-{n}")),
        }
    }

    /// First byte and length of the expected body.
    fn span(self, total: u64) -> (u64, u64) {
        match self {
            Want::Full => (0, total),
            Want::From(a) => (a, total - a),
            Want::Span(a, b) => (a, b - a + 1),
            Want::Suffix(n) => (total - n, n),
        }
    }
}

/// How a viewer's transfer ended (wrong bytes are an `Err` instead).
#[derive(Debug)]
enum Seen {
    Complete,
    Aborted { received: u64, error: String },
    NoResponse(String),
}

/// Bytes received by all viewers, and viewers finished.
struct Progress {
    bytes: watch::Sender<u64>,
    done: watch::Sender<usize>,
}

/// Fetches `want` of `video`, checking every byte against the content as it
/// arrives. `Err` describes a wrong or short body.
async fn view(
    client: &reqwest::Client,
    url: &str,
    video: &Video,
    want: Want,
    progress: &Progress,
) -> Result<Seen, String> {
    let total = video.content.len();
    let (start, len) = want.span(total);
    let mut request = client.get(url);
    if let Some(range) = want.header() {
        request = request.header("range", range);
    }
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(e) => return Ok(Seen::NoResponse(format!("{e:#}"))),
    };
    let expected_status = match want {
        Want::Full => StatusCode::OK,
        _ => StatusCode::PARTIAL_CONTENT,
    };
    if response.status() != expected_status {
        return Err(format!("status {} for {want:?}", response.status()));
    }
    if response.content_length() != Some(len) {
        return Err(format!(
            "content-length {:?} for {want:?}, expected {len}",
            response.content_length()
        ));
    }
    if expected_status == StatusCode::PARTIAL_CONTENT {
        let expected = format!("bytes {start}-{}/{total}", start + len - 1);
        let got = response.headers().get("content-range");
        if got.and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            return Err(format!("content-range {got:?}, expected {expected}"));
        }
    }
    let mut received = 0u64;
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                let n = bytes.len() as u64;
                if received + n > len {
                    return Err(format!(
                        "{} bytes past content-length {len}",
                        received + n - len
                    ));
                }
                let expected = video.content.slice(start + received, bytes.len());
                if bytes != expected {
                    let at = bytes
                        .iter()
                        .zip(expected.iter())
                        .position(|(a, b)| a != b)
                        .unwrap_or(0) as u64;
                    return Err(format!(
                        "wrong byte at offset {} of the file",
                        start + received + at
                    ));
                }
                received += n;
                progress.bytes.send_modify(|b| *b += n);
            }
            Ok(None) if received == len => return Ok(Seen::Complete),
            Ok(None) => {
                return Err(format!(
                    "body ended cleanly after {received} of {len} bytes"
                ));
            }
            Err(e) => {
                return Ok(Seen::Aborted {
                    received,
                    error: format!("{e:#}"),
                });
            }
        }
    }
}

/// Waits until the kill point of the round is reached.
async fn reached(
    point: KillPoint,
    origin: &TestOrigin,
    requests_before: usize,
    progress: &Progress,
) {
    let mut bytes = progress.bytes.subscribe();
    let mut done = progress.done.subscribe();
    match point {
        KillPoint::DuringDiscovery => origin.wait_requests(requests_before + 1).await,
        KillPoint::FirstBodyBytes => {
            let _ = bytes.wait_for(|&b| b > 0).await;
        }
        KillPoint::HeldMidChunk => origin.wait_held(3).await,
        KillPoint::OriginRequests(n) => origin.wait_requests(requests_before + n).await,
        KillPoint::ViewerBytes(n) => {
            let _ = bytes.wait_for(|&b| b >= n).await;
        }
        KillPoint::FirstViewerDone => {
            let _ = done.wait_for(|&d| d >= 1).await;
        }
    }
}

/// Fetches every video so far whole, and this round's also in a few
/// ranges, checking each byte. Returns how many responses had each
/// `X-Cache` value (for the log only).
async fn verify(
    replica: &ReplicaProcess,
    client: &reqwest::Client,
    videos: &[Video],
    this_round: &[Video],
) -> BTreeMap<String, usize> {
    let mut checks = tokio::task::JoinSet::new();
    for video in videos {
        let total = video.content.len();
        let mut wants = vec![Want::Full];
        if this_round.iter().any(|v| v.path == video.path) {
            wants.extend([
                // Across a chunk boundary for any chunk size up to 2 MiB.
                Want::Span(2 * MIB - 1000, 2 * MIB + 1000),
                Want::Suffix(100),
                Want::Span(0, 0),
                Want::From(total - 1),
                Want::Span(5 * MIB + 3, 5 * MIB + 700_000),
            ]);
        }
        for want in wants {
            let client = client.clone();
            let url = format!("{}{}", replica.url(), video.path);
            let video = video.clone();
            checks.spawn(async move {
                let mut request = client.get(&url);
                if let Some(range) = want.header() {
                    request = request.header("range", range);
                }
                let response = request
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{url} {want:?} after restart: {e:#}"));
                let expected_status = match want {
                    Want::Full => StatusCode::OK,
                    _ => StatusCode::PARTIAL_CONTENT,
                };
                assert_eq!(response.status(), expected_status, "{url} {want:?}");
                let x_cache = response
                    .headers()
                    .get("x-cache")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                let body = response
                    .bytes()
                    .await
                    .unwrap_or_else(|e| panic!("{url} {want:?} body after restart: {e:#}"));
                let (start, len) = want.span(total);
                if let Want::Full = want {
                    assert_eq!(
                        sha256(&body),
                        video.sha256,
                        "{url}: whole body after restart differs"
                    );
                } else {
                    assert!(
                        body == video.content.slice(start, len as usize),
                        "{url} {want:?}: body after restart differs"
                    );
                }
                x_cache
            });
        }
    }
    let mut x_cache = BTreeMap::new();
    while let Some(check) = tokio::time::timeout(HANG_GUARD, checks.join_next())
        .await
        .expect("verification hangs")
    {
        match check {
            Ok(value) => *x_cache.entry(value).or_default() += 1,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    x_cache
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_fill_never_serves_wrong_bytes_before_or_after_restart() {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    origin.set_rate(ORIGIN_RATE);
    let cache_dir = cluster.path("replica-cache");
    let mut all_videos = Vec::new();

    for (round, point) in ROUNDS.into_iter().enumerate() {
        let videos = round_videos(round);
        all_videos.extend(videos.iter().cloned());
        for video in &videos {
            origin.put(&video.path, video.content.clone());
        }
        if let KillPoint::HeldMidChunk = point {
            origin.hold_after(HOLD_AT);
        }

        let replica = ReplicaProcess::start(&cluster, &origin.url(), &cache_dir).await;
        let requests_before = origin.requests().len();
        let progress = Arc::new(Progress {
            bytes: watch::channel(0).0,
            done: watch::channel(0).0,
        });
        // Half the viewers on HTTP/2 (a kill resets the streams), half on
        // HTTP/1.1 (a kill closes the connection before Content-Length).
        let clients = [
            client_trusting(&cluster.pki.ca_cert, Protocol::Auto),
            client_trusting(&cluster.pki.ca_cert, Protocol::Http1),
        ];
        let mut viewers = Vec::new();
        for video in &videos {
            let total = video.content.len();
            for want in [
                Want::Full,
                Want::From(3_000_000),
                Want::Span(total / 2, total / 2 + 3 * MIB / 2),
                Want::Suffix(700_000),
            ] {
                let client = clients[viewers.len() % 2].clone();
                let url = format!("{}{}", replica.url(), video.path);
                let video = video.clone();
                let progress = progress.clone();
                viewers.push((
                    format!("{} {want:?}", video.path),
                    tokio::spawn(async move {
                        let seen = view(&client, &url, &video, want, &progress).await;
                        progress.done.send_modify(|d| *d += 1);
                        seen
                    }),
                ));
            }
        }

        let count = viewers.len();
        let mut done = progress.done.subscribe();
        tokio::time::timeout(HANG_GUARD, async {
            tokio::select! {
                _ = reached(point, &origin, requests_before, &progress) => {}
                // Served from a cache that survived the last restart.
                _ = done.wait_for(|&d| d == count) => {}
            }
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: kill point {point:?} never reached"));
        let killed_at = *progress.bytes.borrow();
        let pid = replica.pid();
        replica.kill();
        origin.release();

        let mut wrong = Vec::new();
        let mut summary = Vec::new();
        for (name, viewer) in viewers {
            let seen = tokio::time::timeout(HANG_GUARD, viewer)
                .await
                .unwrap_or_else(|_| panic!("round {round}: viewer {name} hangs after the kill"))
                .expect("viewer task");
            match seen {
                Ok(Seen::Complete) => summary.push(format!("  {name}: complete")),
                Ok(Seen::Aborted { received, error }) => summary.push(format!(
                    "  {name}: aborted after {received} bytes ({error})"
                )),
                Ok(Seen::NoResponse(error)) => {
                    summary.push(format!("  {name}: no response ({error})"))
                }
                Err(problem) => wrong.push(format!("{name}: {problem}")),
            }
        }
        println!(
            "round {round}: killed pid {pid} at {point:?}, viewers had {killed_at} bytes\n{}",
            summary.join("\n")
        );
        assert!(
            wrong.is_empty(),
            "round {round} ({point:?}): viewers of the killed replica got wrong bodies: {wrong:#?}"
        );

        // The checks need no slow origin.
        origin.set_rate(0);
        let restarted = ReplicaProcess::start(&cluster, &origin.url(), &cache_dir).await;
        let client = client_trusting(&cluster.pki.ca_cert, Protocol::Auto);
        let x_cache = verify(&restarted, &client, &all_videos, &videos).await;
        println!("round {round}: after restart every byte checked out (X-Cache: {x_cache:?})");
        restarted.kill();
        origin.set_rate(ORIGIN_RATE);
    }
}
