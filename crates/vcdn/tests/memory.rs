//! Memory of the real `vcdn replica` process under many slow viewers of a
//! big file: 200 viewers each play the start of a 1 GiB file at a video's
//! pace, first cold (the replica fills from the origin while they watch),
//! then warm (the same bytes again, from disk). The replica's peak resident
//! memory must stay within 64 MiB: bodies are streamed through small
//! per-viewer buffers and origin data goes to disk, so memory must not grow
//! with file size or viewer count.
//!
//! Run with `cargo test -p vcdn --test memory -- --nocapture` to see the
//! measured figures.

mod common;

use std::time::{Duration, Instant};

use http::{StatusCode, Version};
use tokio::sync::watch;
use vcdn_test_support::origin::Content;
use vcdn_test_support::{Protocol, TestCluster, client_trusting};

use common::ReplicaProcess;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const FILE_LEN: u64 = 1024 * MIB;
const VIEWERS: usize = 200;
/// HTTP/2 connections the viewers share: ten streams on each.
const CONNECTIONS: usize = 20;
/// What each viewer plays before leaving.
const WATCHED: u64 = 16 * MIB;
/// Pacing of a viewer: this many bytes, then a pause (about 20 Mbit/s).
const PACE_BYTES: u64 = 256 * KIB;
const PACE_PAUSE: Duration = Duration::from_millis(100);
/// The limit on the replica's peak resident memory.
const PEAK_LIMIT: u64 = 64 * MIB;
/// How often the replica's memory is sampled during a round.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// Memory of a process from `/proc/<pid>/status`, in bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss: u64,
    /// Peak RSS.
    hwm: u64,
    /// Heap, stacks and other private memory.
    rss_anon: u64,
    /// The binary and libraries.
    rss_file: u64,
    threads: u64,
}

fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|rest| rest.trim().trim_end_matches("kB").trim())
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    Memory {
        rss: field("VmRSS:") * KIB,
        hwm: field("VmHWM:") * KIB,
        rss_anon: field("RssAnon:") * KIB,
        rss_file: field("RssFile:") * KIB,
        threads: field("Threads:"),
    }
}

/// Resets the process's peak (VmHWM) to its current RSS; false if the
/// kernel does not allow it.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// What one round measured.
struct Round {
    /// VmHWM at the end of the round (the peak since the last reset).
    hwm: u64,
    /// The sample with the largest VmRSS.
    sampled_peak: Memory,
    /// VmRSS once the viewers had left.
    rss_after: u64,
    origin_bytes: u64,
    viewer_bytes: u64,
    elapsed: Duration,
}

/// One viewer: plays the first [`WATCHED`] bytes at a video's pace, checking
/// the first piece after every pause against the content, then leaves.
async fn play(client: reqwest::Client, url: String, content: Content) -> u64 {
    let mut response = client.get(&url).send().await.expect("response headers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2);
    let mut played = 0u64;
    let mut since_pause = 0u64;
    let mut check = true;
    while played < WATCHED {
        let piece = response
            .chunk()
            .await
            .expect("body while playing")
            .expect("the body does not end early");
        if check {
            assert!(
                piece == content.slice(played, piece.len()),
                "wrong bytes at offset {played}"
            );
            check = false;
        }
        played += piece.len() as u64;
        since_pause += piece.len() as u64;
        if since_pause >= PACE_BYTES {
            since_pause = 0;
            check = true;
            tokio::time::sleep(PACE_PAUSE).await;
        }
    }
    played
}

/// Runs the viewers once while sampling the replica's memory.
async fn round(
    replica: &ReplicaProcess,
    clients: &[reqwest::Client],
    origin_bytes: impl Fn() -> u64,
    content: &Content,
) -> Round {
    let pid = replica.pid();
    let reset = reset_peak(pid);
    let origin_before = origin_bytes();
    let started = Instant::now();

    let (stop, mut stopped) = watch::channel(false);
    let sampler = tokio::spawn(async move {
        let mut peak = Memory::default();
        loop {
            let now = memory(pid);
            if now.rss > peak.rss {
                peak = now;
            }
            tokio::select! {
                _ = stopped.wait_for(|&s| s) => return peak,
                _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            }
        }
    });

    let url = format!("{}/big.mp4", replica.url());
    let viewers: Vec<_> = (0..VIEWERS)
        .map(|i| {
            tokio::spawn(play(
                clients[i % clients.len()].clone(),
                url.clone(),
                content.clone(),
            ))
        })
        .collect();
    let mut viewer_bytes = 0;
    for viewer in viewers {
        viewer_bytes += viewer.await.expect("viewer");
    }
    stop.send_replace(true);
    let sampled_peak = sampler.await.expect("sampler");
    let end = memory(pid);
    Round {
        // Without a reset, VmHWM is the peak since start: the sampled peak
        // is the best figure for this round then.
        hwm: if reset {
            end.hwm
        } else {
            sampled_peak.rss.max(end.rss)
        },
        sampled_peak,
        rss_after: end.rss,
        origin_bytes: origin_bytes() - origin_before,
        viewer_bytes,
        elapsed: started.elapsed(),
    }
}

fn report(name: &str, r: &Round) {
    let p = &r.sampled_peak;
    println!(
        "{name}: peak RSS {} (VmHWM); highest sample: RSS {} = anon {} + file {}, \
         {} threads; RSS after {}; viewers read {}, origin sent {}; {:.1} s",
        mib(r.hwm),
        mib(p.rss),
        mib(p.rss_anon),
        mib(p.rss_file),
        p.threads,
        mib(r.rss_after),
        mib(r.viewer_bytes),
        mib(r.origin_bytes),
        r.elapsed.as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_slow_viewers_of_a_1_gib_file_keep_the_replica_within_64_mib() {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    let content = Content::Virtual {
        len: FILE_LEN,
        seed: 42,
    };
    origin.put("/big.mp4", content.clone());
    let replica = ReplicaProcess::start(&cluster, &origin.url(), &cluster.path("cache")).await;
    let idle = memory(replica.pid());
    println!(
        "replica pid {} at start: RSS {}, {VIEWERS} viewers on {CONNECTIONS} HTTP/2 \
         connections, each playing {} at {} per {PACE_PAUSE:?}",
        replica.pid(),
        mib(idle.rss),
        mib(WATCHED),
        mib(PACE_BYTES),
    );

    // One connection per client, opened before the viewers start so each
    // carries VIEWERS / CONNECTIONS streams.
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let client = client_trusting(&cluster.pki.ca_cert, Protocol::Auto);
        let health = client
            .get(format!("{}/healthz", replica.url()))
            .send()
            .await
            .expect("healthz");
        assert_eq!(health.version(), Version::HTTP_2);
        health.bytes().await.expect("healthz body");
        clients.push(client);
    }

    let cold = round(&replica, &clients, || origin.body_bytes(), &content).await;
    report("cold", &cold);
    let warm = round(&replica, &clients, || origin.body_bytes(), &content).await;
    report("warm", &warm);
    replica.kill();

    // Coalescing: every viewer reads the same bytes, so the origin sends
    // them about once, plus the read-ahead and what the viewers' pumps ran
    // ahead of them, not once per viewer.
    let total_origin = cold.origin_bytes + warm.origin_bytes;
    assert!(
        total_origin <= 2 * WATCHED + 16 * MIB,
        "origin sent {} for {VIEWERS} viewers of the same {}",
        mib(total_origin),
        mib(WATCHED)
    );
    assert!(
        cold.hwm <= PEAK_LIMIT && warm.hwm <= PEAK_LIMIT,
        "peak RSS: cold {}, warm {} (limit {})",
        mib(cold.hwm),
        mib(warm.hwm),
        mib(PEAK_LIMIT)
    );
}
