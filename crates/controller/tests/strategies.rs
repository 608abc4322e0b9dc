//! The routing strategies, measured through `/api/route` against real
//! HTTPS stand-in replicas whose reported load the tests control.

mod common;

use std::collections::HashMap;

use common::{StandIn, base_of, client, config, route, start_controller, wait_for, wait_healthy};
use serde_json::json;
use vcdn_controller::Strategy;
use vcdn_test_support::TestCluster;

/// Routes every path once; returns path → base URL of the replica chosen.
async fn routes(
    client: &reqwest::Client,
    controller: &str,
    paths: &[String],
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for path in paths {
        let routed = route(client, controller, path).await;
        out.insert(
            path.clone(),
            base_of(routed["url"].as_str().expect("route url")),
        );
    }
    out
}

#[tokio::test]
async fn consistent_hash_keeps_each_video_on_one_replica_and_a_leaving_replica_moves_only_its_videos()
 {
    let cluster = TestCluster::new();
    let mut stand_ins = Vec::new();
    for name in ["a", "b", "c"] {
        stand_ins.push(StandIn::start(&cluster, name).await);
    }
    let urls: Vec<String> = stand_ins.iter().map(StandIn::url).collect();
    let mut config = config(&urls, "https://127.0.0.1:9");
    config.strategy = Strategy::ConsistentHash;
    // Stability is a property of the hashing; the load bound, which
    // deliberately moves viewers off a busy replica, is tested below.
    config.bounded_load_factor = 1e9;
    let controller = start_controller(&cluster, config).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;

    let paths: Vec<String> = (0..1000).map(|i| format!("/video-{i}.mp4")).collect();
    let before = routes(&client, &controller.url(), &paths).await;
    assert_eq!(before, routes(&client, &controller.url(), &paths).await);
    let mut share: HashMap<&str, usize> = HashMap::new();
    for url in before.values() {
        *share.entry(url).or_default() += 1;
    }
    eprintln!("1000 videos over 3 replicas: {share:?}");
    for url in &urls {
        // About a third each; far from it would mean a broken hash.
        assert!(share[url.as_str()] > 200, "{share:?}");
    }

    let leaving = stand_ins.remove(1);
    let gone = leaving.url();
    leaving.stop().await;
    wait_healthy(
        &client,
        &controller.url(),
        &[urls[0].clone(), urls[2].clone()],
    )
    .await;
    let after = routes(&client, &controller.url(), &paths).await;
    let mut moved = 0;
    for path in &paths {
        if before[path] == gone {
            assert_ne!(after[path], gone);
            moved += 1;
        } else {
            assert_eq!(after[path], before[path], "{path} moved");
        }
    }
    eprintln!("replica left: {moved} of 1000 videos moved, all of them its own");
}

/// Requests drawn from a Zipf(`s`) popularity over `videos`,
/// deterministically.
fn zipf_paths(videos: usize, s: f64, requests: usize, seed: u64) -> Vec<String> {
    let weights: Vec<f64> = (1..=videos).map(|k| (k as f64).powf(-s)).collect();
    let total: f64 = weights.iter().sum();
    let mut state = seed | 1;
    (0..requests)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut x = (state >> 11) as f64 / (1u64 << 53) as f64 * total;
            let mut k = 0;
            while k + 1 < videos && x >= weights[k] {
                x -= weights[k];
                k += 1;
            }
            format!("/video-{k}.mp4")
        })
        .collect()
}

#[tokio::test]
async fn bounded_load_holds_under_a_skewed_workload() {
    let cluster = TestCluster::new();
    let mut stand_ins = Vec::new();
    for name in ["a", "b", "c"] {
        stand_ins.push(StandIn::start(&cluster, name).await);
    }
    let urls: Vec<String> = stand_ins.iter().map(StandIn::url).collect();
    // Zipf with s = 2: the hottest video alone is about 60% of requests,
    // more than any replica may take under a bound of 1.25 x the mean.
    let requests = zipf_paths(50, 2.0, 600, 42);

    let mut results = Vec::new();
    for factor in [1.25, 1e9] {
        let mut config = config(&urls, "https://127.0.0.1:9");
        config.strategy = Strategy::ConsistentHash;
        config.bounded_load_factor = factor;
        // One probe at start and none during the burst: the load the bound
        // sees is then exactly the viewers sent, so the bound is exact.
        config.probe_interval_ms = 600_000;
        let controller = start_controller(&cluster, config).await;
        let client = client(&cluster);
        wait_healthy(&client, &controller.url(), &urls).await;
        let mut load: HashMap<String, usize> = HashMap::new();
        for path in &requests {
            let routed = route(&client, &controller.url(), path).await;
            *load
                .entry(base_of(routed["url"].as_str().unwrap()))
                .or_default() += 1;
        }
        let max = load.values().copied().max().unwrap_or(0);
        eprintln!("bounded_load_factor {factor}: per-replica load {load:?}, max {max}");
        results.push(max);
    }
    let bound = (1.25 * requests.len() as f64 / 3.0).ceil() as usize;
    assert!(results[0] <= bound, "{} > {bound}", results[0]);
    // Unbounded, the replica owning the hottest videos takes more than the
    // bound allows: the bound is what kept it in check.
    assert!(results[1] > bound, "{} <= {bound}", results[1]);
}

#[tokio::test]
async fn least_loaded_prefers_the_replica_reporting_less_load() {
    let cluster = TestCluster::new();
    let a = StandIn::start(&cluster, "a").await;
    let b = StandIn::start(&cluster, "b").await;
    a.report(json!({"active_streams": 50, "bytes_out_per_sec": 5.0e6}));
    b.report(json!({"active_streams": 5, "bytes_out_per_sec": 1.0e6}));
    let urls = vec![a.url(), b.url()];
    let mut config = config(&urls, "https://127.0.0.1:9");
    config.strategy = Strategy::LeastLoaded;
    let controller = start_controller(&cluster, config).await;
    let client = client(&cluster);
    wait_for(&client, &controller.url(), "both loads reported", |v| {
        common::replica(v, &a.url()).is_some_and(|r| r["active_streams"] == 50)
            && common::replica(v, &b.url()).is_some_and(|r| r["active_streams"] == 5)
    })
    .await;
    for i in 0..20 {
        let routed = route(&client, &controller.url(), &format!("/v{i}.mp4")).await;
        assert_eq!(base_of(routed["url"].as_str().unwrap()), b.url());
        assert_eq!(routed["strategy"], "least-loaded");
    }

    a.report(json!({"active_streams": 0}));
    b.report(json!({"active_streams": 80}));
    wait_for(&client, &controller.url(), "the loads swapped", |v| {
        common::replica(v, &a.url()).is_some_and(|r| r["active_streams"] == 0)
            && common::replica(v, &b.url()).is_some_and(|r| r["active_streams"] == 80)
    })
    .await;
    for i in 0..20 {
        let routed = route(&client, &controller.url(), &format!("/w{i}.mp4")).await;
        assert_eq!(base_of(routed["url"].as_str().unwrap()), a.url());
    }
}
