//! The JSON APIs and metrics a player or dashboard reads.

mod common;

use common::{
    StandIn, WAIT_GUARD, client, config, json, replica, route, start_controller, wait_for,
    wait_healthy,
};
use http::{StatusCode, header};
use serde_json::json;
use vcdn_test_support::{TestCluster, pattern};

#[tokio::test]
async fn route_api_names_the_replica_and_the_full_url() {
    let cluster = TestCluster::new();
    let a = StandIn::start(&cluster, "vcdn-a").await;
    let urls = vec![a.url()];
    let controller = start_controller(&cluster, config(&urls, "https://127.0.0.1:9")).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;

    let routed = route(&client, &controller.url(), "/show/x%20y.mp4?sig=1").await;
    assert_eq!(
        routed,
        json!({
            "replica": "vcdn-a",
            "url": format!("{}/show/x%20y.mp4?sig=1", a.url()),
            "strategy": "round-robin",
            "fallback": false,
        })
    );
    let bare = client
        .get(format!("{}/api/route/", controller.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn videos_api_passes_the_origins_catalog_through() {
    let mut cluster = TestCluster::new();
    cluster.put_video("one.mp4", &pattern(1000, 1));
    cluster.put_video("show/two.mp4", &pattern(2000, 2));
    cluster.start_origin().await;
    let controller = start_controller(&cluster, config(&[], &cluster.origin_url())).await;
    let client = client(&cluster);

    let response = client
        .get(format!("{}/api/videos", controller.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let catalog = json(response).await;
    let paths: Vec<&str> = catalog["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/one.mp4", "/show/two.mp4"]);
    assert_eq!(catalog["videos"][1]["size"], 2000);
}

#[tokio::test]
async fn videos_api_is_a_502_when_the_origin_is_unreachable() {
    let cluster = TestCluster::new();
    let controller = start_controller(&cluster, config(&[], "https://127.0.0.1:9")).await;
    let client = client(&cluster);
    let response = client
        .get(format!("{}/api/videos", controller.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    // No internal detail (addresses, errors) reaches the client.
    assert_eq!(json(response).await, json!({"error": "upstream failed"}));
}

#[tokio::test]
async fn cluster_api_shows_health_load_cache_statistics_and_history() {
    let cluster = TestCluster::new();
    let a = StandIn::start(&cluster, "vcdn-8081").await;
    let b = StandIn::start(&cluster, "vcdn-8082").await;
    a.report(json!({
        "active_streams": 3, "bytes_out_per_sec": 12345.0, "requests_per_sec": 2.0,
        "cache_bytes": 123, "cache_max_bytes": 456, "cache_fullness": 0.27,
        "hit_ratio": 0.93, "requests_total": 100, "hits_total": 93,
        "bytes_served_total": 1000, "origin_bytes_total": 100,
    }));
    b.report(json!({"bytes_served_total": 3000, "origin_bytes_total": 300}));
    let urls = vec![a.url(), b.url()];
    let controller = start_controller(&cluster, config(&urls, "https://127.0.0.1:9")).await;
    let client = client(&cluster);
    let (view, _) = wait_for(&client, &controller.url(), "two samples of history", |v| {
        urls.iter().all(|u| {
            replica(v, u).is_some_and(|r| {
                r["healthy"] == true && r["history"].as_array().is_some_and(|h| !h.is_empty())
            })
        })
    })
    .await;

    assert_eq!(view["strategy"], "round-robin");
    assert_eq!(view["mode"], "redirect");
    assert_eq!(view["healthy"], 2);
    assert_eq!(view["total"], 2);
    assert_eq!(view["bytes_served_total"], 4000);
    assert_eq!(view["origin_bytes_total"], 400);
    let offload = view["origin_offload"].as_f64().unwrap();
    assert!((offload - 0.9).abs() < 1e-9, "{offload}");

    let entry = replica(&view, &a.url()).unwrap();
    assert_eq!(entry["name"], "vcdn-8081");
    assert_eq!(entry["state"], "healthy");
    assert_eq!(entry["source"], "config");
    assert_eq!(entry["active_streams"], 3);
    assert_eq!(entry["bytes_out_per_sec"], 12345.0);
    assert_eq!(entry["cache_fullness"], 0.27);
    assert_eq!(entry["hit_ratio"], 0.93);
    assert_eq!(entry["bytes_served_total"], 1000);
    assert!(entry["last_probe_unix_ms"].as_u64().unwrap() > 0);
    assert!(entry["probe_latency_ms"].as_f64().is_some());
    let sample = &entry["history"][0];
    for field in [
        "unix_ms",
        "healthy",
        "active_streams",
        "requests_per_sec",
        "bytes_out_per_sec",
        "hit_ratio",
    ] {
        assert!(sample.get(field).is_some(), "history sample lacks {field}");
    }
    // A replica that reports only totals still shows a hit ratio when it
    // reports hits; this one does not, so it is null, not made up.
    assert!(replica(&view, &b.url()).unwrap()["hit_ratio"].is_null());
}

#[tokio::test]
async fn metrics_count_routes_by_replica_and_strategy_and_healthy_replicas() {
    let cluster = TestCluster::new();
    let a = StandIn::start(&cluster, "a").await;
    let urls = vec![a.url()];
    let controller = start_controller(&cluster, config(&urls, "https://127.0.0.1:9")).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;
    for _ in 0..3 {
        common::location(&client, &format!("{}/v.mp4", controller.url())).await;
    }

    let response = client
        .get(format!("{}/metrics", controller.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let routes = format!(
        "vcdn_controller_routes_total{{replica=\"{}\",strategy=\"round-robin\",mode=\"redirect\"}} 3",
        a.url()
    );
    assert!(text.contains(&routes), "{text}");
    assert!(
        text.contains("vcdn_controller_healthy_replicas 1"),
        "{text}"
    );
    assert!(text.contains("vcdn_controller_probes_total"), "{text}");
}

#[tokio::test]
async fn cluster_long_poll_answers_when_a_replica_changes_state() {
    let cluster = TestCluster::new();
    let a = StandIn::start(&cluster, "vcdn-a").await;
    let b = StandIn::start(&cluster, "vcdn-b").await;
    let urls = vec![a.url(), b.url()];
    let controller = start_controller(&cluster, config(&urls, "https://127.0.0.1:9")).await;
    let client = client(&cluster);
    let (view, _) = wait_healthy(&client, &controller.url(), &urls).await;
    let generation = view["generation"].as_u64().unwrap();

    // Nothing changes: the answer comes anyway, with the same generation.
    let quiet = client
        .get(format!(
            "{}/api/cluster?changed_after={generation}",
            controller.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(quiet.status(), StatusCode::OK);
    assert_eq!(json(quiet).await["generation"], generation);

    // A replica going down ends a wait with a new generation, and that
    // answer shows it down.
    b.set_healthz(StatusCode::OK, json!({"status": "draining"}));
    let started = std::time::Instant::now();
    let view = loop {
        assert!(started.elapsed() < WAIT_GUARD, "no change seen");
        let view = json(
            client
                .get(format!(
                    "{}/api/cluster?changed_after={generation}",
                    controller.url()
                ))
                .send()
                .await
                .unwrap(),
        )
        .await;
        if view["generation"] != generation {
            break view;
        }
    };
    let b_view = replica(&view, &b.url()).unwrap();
    assert_eq!(b_view["state"], "down", "{view:#}");

    let bad = client
        .get(format!(
            "{}/api/cluster?changed_after=soon",
            controller.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}
