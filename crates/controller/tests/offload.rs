//! A benchmark, not a check: what each routing strategy costs the origin
//! on a Zipf workload over a catalog larger than one replica's cache.
//!
//! For each strategy a fresh cluster (so fresh, empty caches) is built: a
//! test origin with a catalog of virtual videos of a few hundred KiB each,
//! three real replicas whose caches each hold about a third of the catalog,
//! and a controller in `redirect` mode in front of them. The same seeded
//! Zipf(1.0) request stream is replayed through it as a viewer would: ask
//! the controller for the video, take the redirect's `Location`, and fetch
//! that URL from the replica in full, checking the length and a sample of
//! the bytes. Printed per strategy, as one Markdown table: the body bytes
//! the origin sent, that as a fraction of the bytes viewers got, the share
//! of responses the replicas answered as `X-Cache: HIT`, and how evenly the
//! requests spread over the replicas (max/mean). A last row runs
//! consistent hashing with its load bound turned off, to show what the
//! bound costs in origin bytes and what it buys in spread.
//!
//! Run with
//! `cargo test -p vcdn-controller --test offload -- --ignored --nocapture`.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::{base_of, client, config, location, start_controller, wait_healthy};
use http::StatusCode;
use vcdn_controller::{Mode, Strategy};
use vcdn_test_support::TestCluster;
use vcdn_test_support::origin::{Content, TestOrigin, virtual_bytes};

const VIDEOS: usize = 150;
const REQUESTS: usize = 3000;
const REPLICAS: usize = 3;
const ZIPF_S: f64 = 1.0;
const SEED: u64 = 2024;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const CHUNK_BYTES: u64 = 64 * KIB;
/// About a third of the catalog (which is about 47 MiB), so the catalog is
/// several times one cache but fits, roughly, in the three together.
const CACHE_MAX_BYTES: u64 = 16 * MIB;
/// A hang guard for one strategy's whole run, far above the normal time.
const STRATEGY_GUARD: Duration = Duration::from_secs(150);

/// splitmix64: a small seeded generator, enough for a workload.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One video of the catalog.
struct Video {
    path: String,
    len: u64,
    seed: u64,
}

/// `VIDEOS` virtual videos of 128–512 KiB (not chunk multiples); the
/// `k`-th is the `k`-th most popular.
fn catalog() -> Vec<Video> {
    let mut rng = Rng(SEED ^ 0xCA7A_1006);
    (0..VIDEOS)
        .map(|k| Video {
            path: format!("/video-{k}.mp4"),
            len: 128 * KIB + rng.next_u64() % (384 * KIB),
            seed: rng.next_u64(),
        })
        .collect()
}

/// `REQUESTS` catalog indices drawn from Zipf(`ZIPF_S`) popularity
/// (rank `k` has weight `1 / (k + 1)^s`), deterministically.
fn zipf_stream() -> Vec<usize> {
    let mut cdf = Vec::with_capacity(VIDEOS);
    let mut total = 0.0;
    for k in 0..VIDEOS {
        total += 1.0 / ((k + 1) as f64).powf(ZIPF_S);
        cdf.push(total);
    }
    let mut rng = Rng(SEED);
    (0..REQUESTS)
        .map(|_| {
            let x = rng.next_f64() * total;
            cdf.partition_point(|&c| c <= x).min(VIDEOS - 1)
        })
        .collect()
}

/// What one strategy's run measured.
struct Outcome {
    origin_bytes: u64,
    served_bytes: u64,
    hits: usize,
    /// `X-Cache` value → responses.
    cache_status: BTreeMap<String, usize>,
    /// Requests routed to each replica, in replica order.
    per_replica: Vec<usize>,
    elapsed: Duration,
}

/// One strategy's run on a fresh cluster; `bounded_load_factor` as in the
/// controller's configuration (`None`: its default).
async fn run(
    strategy: Strategy,
    bounded_load_factor: Option<f64>,
    videos: &[Video],
    stream: &[usize],
) -> Outcome {
    let started = Instant::now();
    let cluster = TestCluster::new();
    let origin: TestOrigin = cluster.start_test_origin().await;
    for video in videos {
        origin.put(
            &video.path,
            Content::Virtual {
                len: video.len,
                seed: video.seed,
            },
        );
    }
    let mut replicas = Vec::new();
    for i in 0..REPLICAS {
        let replica_config = vcdn_replica::Config {
            name: Some(format!("cache-{i}")),
            cache_max_bytes: CACHE_MAX_BYTES,
            chunk_bytes: CHUNK_BYTES,
            ..vcdn_replica::Config::default()
        };
        replicas.push(cluster.start_replica(&origin.url(), replica_config).await);
    }
    let urls: Vec<String> = replicas.iter().map(|r| r.url()).collect();
    let mut controller_config = config(&urls, &origin.url());
    controller_config.strategy = strategy;
    controller_config.mode = Mode::Redirect;
    if let Some(factor) = bounded_load_factor {
        controller_config.bounded_load_factor = factor;
    }
    let controller = start_controller(&cluster, controller_config).await;
    let controller_url = controller.url();
    let client = client(&cluster);
    wait_healthy(&client, &controller_url, &urls).await;

    let mut outcome = Outcome {
        origin_bytes: 0,
        served_bytes: 0,
        hits: 0,
        cache_status: BTreeMap::new(),
        per_replica: vec![0; REPLICAS],
        elapsed: Duration::ZERO,
    };
    for &k in stream {
        let video = &videos[k];
        let target = location(&client, &format!("{controller_url}{}", video.path)).await;
        let replica = urls
            .iter()
            .position(|u| *u == base_of(&target))
            .unwrap_or_else(|| panic!("{target} is not one of the replicas {urls:?}"));
        outcome.per_replica[replica] += 1;

        let response = client
            .get(&target)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {target}: {e}"));
        assert_eq!(response.status(), StatusCode::OK, "GET {target}");
        let cache = response
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("body of {target}: {e}"));
        assert_eq!(body.len() as u64, video.len, "length of {target}");
        // A sample of the bytes: the right video, not just the right size.
        let tail = video.len - 16;
        assert_eq!(&body[..16], virtual_bytes(video.seed, 0, 16), "{target}");
        assert_eq!(
            &body[tail as usize..],
            virtual_bytes(video.seed, tail, 16),
            "{target}"
        );
        outcome.served_bytes += video.len;
        if cache == "HIT" {
            outcome.hits += 1;
        }
        *outcome.cache_status.entry(cache).or_default() += 1;
    }
    outcome.origin_bytes = origin.body_bytes();

    controller.stop().await;
    for replica in replicas {
        replica.stop().await;
    }
    outcome.elapsed = started.elapsed();
    outcome
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark (about a minute in a debug build); run with --ignored --nocapture"]
async fn origin_offload_per_strategy_on_a_zipf_workload() {
    let videos = catalog();
    let stream = zipf_stream();
    let catalog_bytes: u64 = videos.iter().map(|v| v.len).sum();
    let distinct: HashSet<usize> = stream.iter().copied().collect();
    // Each requested video fetched once: what no cache can avoid.
    let compulsory: u64 = distinct.iter().map(|&k| videos[k].len).sum();
    assert!(
        catalog_bytes > 2 * CACHE_MAX_BYTES
            && catalog_bytes < 2 * REPLICAS as u64 * CACHE_MAX_BYTES,
        "catalog {catalog_bytes} B vs caches of {CACHE_MAX_BYTES} B"
    );

    // The strategies with the controller's defaults, then consistent
    // hashing without its load bound, to show what the bound costs.
    let runs = [
        (Strategy::RoundRobin, None, "round-robin"),
        (Strategy::ConsistentHash, None, "consistent-hash"),
        (Strategy::LeastLoaded, None, "least-loaded"),
        (
            Strategy::ConsistentHash,
            Some(1e9),
            "consistent-hash, no load bound",
        ),
    ];
    let mut rows = Vec::new();
    for (strategy, bound, label) in runs {
        let outcome = tokio::time::timeout(STRATEGY_GUARD, run(strategy, bound, &videos, &stream))
            .await
            .unwrap_or_else(|_| panic!("{label} took over {STRATEGY_GUARD:?}"));
        eprintln!(
            "{label}: {:.1} s, X-Cache {:?}",
            outcome.elapsed.as_secs_f64(),
            outcome.cache_status
        );
        rows.push((label, outcome));
    }

    println!();
    println!(
        "{REQUESTS} requests, Zipf s={ZIPF_S:.1} over {VIDEOS} videos of 128–512 KiB \
         ({:.1} MiB; {} requested, {:.1} MiB); {REPLICAS} replicas with {} MiB caches \
         ({:.1}× smaller than the catalog), {} KiB chunks; controller in redirect mode",
        mib(catalog_bytes),
        distinct.len(),
        mib(compulsory),
        CACHE_MAX_BYTES / MIB,
        catalog_bytes as f64 / CACHE_MAX_BYTES as f64,
        CHUNK_BYTES / KIB,
    );
    println!();
    println!(
        "| strategy | origin bytes | origin / served | hit ratio | requests per replica | load spread (max/mean) |"
    );
    println!("|---|---:|---:|---:|---|---:|");
    for (label, o) in &rows {
        let mean = REQUESTS as f64 / REPLICAS as f64;
        let max = o.per_replica.iter().copied().max().unwrap_or(0);
        let per_replica: Vec<String> = o.per_replica.iter().map(ToString::to_string).collect();
        println!(
            "| {label} | {:.1} MiB | {:.1} % | {:.1} % | {} | {:.2} |",
            mib(o.origin_bytes),
            100.0 * o.origin_bytes as f64 / o.served_bytes as f64,
            100.0 * o.hits as f64 / REQUESTS as f64,
            per_replica.join(" / "),
            max as f64 / mean,
        );
    }
    println!();
    println!(
        "Served {:.1} MiB per strategy; fetching each requested video once would cost the origin {:.1} MiB.",
        mib(rows.first().map_or(0, |(_, o)| o.served_bytes)),
        mib(compulsory),
    );
}
