//! A measurement, not a check: how much cache affinity each strategy
//! gives on a Zipf workload.
//!
//! 3000 requests over 200 videos with Zipf(1.0) popularity are routed by a
//! controller in front of three real replicas. Until the replicas evict,
//! every distinct (replica, video) pair costs exactly one fill from the
//! origin, so the number of pairs is the origin traffic in videos: fewer
//! means better affinity. Run with
//! `cargo test -p vcdn-controller --test offload -- --ignored --nocapture`.

mod common;

use std::collections::{HashMap, HashSet};

use common::{
    Running, base_of, client, config, route, start_controller, start_replica_at, wait_healthy,
};
use vcdn_controller::Strategy;
use vcdn_test_support::TestCluster;

const VIDEOS: usize = 200;
const REQUESTS: usize = 3000;

/// Requests drawn from Zipf(1.0) popularity, deterministically.
fn zipf_paths(seed: u64) -> Vec<String> {
    let weights: Vec<f64> = (1..=VIDEOS).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut state = seed | 1;
    (0..REQUESTS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut x = (state >> 11) as f64 / (1u64 << 53) as f64 * total;
            let mut k = 0;
            while k + 1 < VIDEOS && x >= weights[k] {
                x -= weights[k];
                k += 1;
            }
            format!("/video-{k}.mp4")
        })
        .collect()
}

#[tokio::test]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn origin_offload_per_strategy_on_a_zipf_workload() {
    let mut cluster = TestCluster::new();
    cluster.start_origin().await;
    let origin = cluster.origin_url();
    let mut replicas: Vec<Running> = Vec::new();
    for i in 0..3 {
        replicas.push(
            start_replica_at(
                &cluster,
                &origin,
                "127.0.0.1:0".parse().unwrap(),
                &format!("cache-{i}"),
            )
            .await,
        );
    }
    let urls: Vec<String> = replicas.iter().map(Running::url).collect();
    let requests = zipf_paths(2024);
    let distinct_videos = requests.iter().collect::<HashSet<_>>().len();

    println!();
    println!(
        "{REQUESTS} requests, {VIDEOS} videos, Zipf s=1.0 ({distinct_videos} distinct requested), 3 replicas"
    );
    println!(
        "{:<16} {:>6} {:>10} {:>10}  per-replica requests (max/mean)",
        "strategy", "fills", "hit ratio", "vs ideal"
    );
    for strategy in [
        Strategy::RoundRobin,
        Strategy::ConsistentHash,
        Strategy::LeastLoaded,
    ] {
        let mut config = config(&urls, &origin);
        config.strategy = strategy;
        let controller = start_controller(&cluster, config).await;
        let client = client(&cluster);
        wait_healthy(&client, &controller.url(), &urls).await;

        let mut pairs = HashSet::new();
        let mut load: HashMap<String, usize> = HashMap::new();
        for path in &requests {
            let routed = route(&client, &controller.url(), path).await;
            let replica = base_of(routed["url"].as_str().expect("url"));
            *load.entry(replica.clone()).or_default() += 1;
            pairs.insert((replica, path.clone()));
        }
        let fills = pairs.len();
        let mut counts: Vec<usize> = urls
            .iter()
            .map(|u| load.get(u).copied().unwrap_or(0))
            .collect();
        counts.sort_unstable();
        let mean = REQUESTS as f64 / urls.len() as f64;
        println!(
            "{:<16} {:>6} {:>10.3} {:>9.2}x  {:?} ({:.2})",
            strategy.as_str(),
            fills,
            1.0 - fills as f64 / REQUESTS as f64,
            fills as f64 / distinct_videos as f64,
            counts,
            counts.last().copied().unwrap_or(0) as f64 / mean,
        );
        controller.stop().await;
    }
}
