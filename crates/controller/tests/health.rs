//! Health-aware routing: replicas that stop, come back, report trouble or
//! overload, and what viewers are sent to meanwhile.

mod common;

use common::{
    Running, StandIn, client, config, location, replica, route, start_controller, start_replica_at,
    wait_for, wait_healthy,
};
use http::StatusCode;
use serde_json::json;
use vcdn_test_support::{TestCluster, pattern};

async fn origin_and_replicas(n: usize) -> (TestCluster, Vec<Running>) {
    let mut cluster = TestCluster::new();
    cluster.put_video("v.mp4", &pattern(200_000, 3));
    cluster.start_origin().await;
    let origin = cluster.origin_url();
    let mut replicas = Vec::new();
    for i in 0..n {
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
    (cluster, replicas)
}

#[tokio::test]
async fn a_stopped_replica_leaves_rotation_and_returns_after_restart() {
    let (cluster, mut replicas) = origin_and_replicas(3).await;
    let urls: Vec<String> = replicas.iter().map(Running::url).collect();
    let controller = start_controller(&cluster, config(&urls, &cluster.origin_url())).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;

    let stopped = replicas.remove(1);
    let addr = stopped.addr;
    stopped.stop().await;
    let (_, took) = wait_healthy(
        &client,
        &controller.url(),
        &[urls[0].clone(), urls[2].clone()],
    )
    .await;
    // Recorded, not asserted: the target with the defaults is 2 s.
    eprintln!("stopped replica out of rotation after {took:?}");

    let mut sent = Vec::new();
    for _ in 0..30 {
        sent.push(location(&client, &format!("{}/v.mp4", controller.url())).await);
    }
    let spread = common::spread(sent);
    assert_eq!(spread.get(&urls[1]), None, "{spread:?}");
    assert_eq!(spread.get(&urls[0]), Some(&15));
    assert_eq!(spread.get(&urls[2]), Some(&15));

    // Restarted on the same address, it is probed back into rotation.
    let _restarted = start_replica_at(&cluster, &cluster.origin_url(), addr, "cache-1b").await;
    let (_, took) = wait_healthy(&client, &controller.url(), &urls).await;
    eprintln!("restarted replica back in rotation after {took:?}");
    let mut sent = Vec::new();
    for _ in 0..30 {
        sent.push(location(&client, &format!("{}/v.mp4", controller.url())).await);
    }
    assert_eq!(common::spread(sent).get(&urls[1]), Some(&10));
}

#[tokio::test]
async fn with_every_replica_down_viewers_go_to_the_origin() {
    let (cluster, replicas) = origin_and_replicas(2).await;
    let urls: Vec<String> = replicas.iter().map(Running::url).collect();
    let controller = start_controller(&cluster, config(&urls, &cluster.origin_url())).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;

    for replica in replicas {
        replica.stop().await;
    }
    wait_healthy(&client, &controller.url(), &[]).await;

    let to = location(&client, &format!("{}/v.mp4?x=1", controller.url())).await;
    assert_eq!(to, format!("{}/v.mp4?x=1", cluster.origin_url()));
    let routed = route(&client, &controller.url(), "/v.mp4").await;
    assert_eq!(routed["fallback"], true);
    assert_eq!(routed["replica"], "origin");
    let body = client.get(&to).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(body, pattern(200_000, 3));
}

#[tokio::test]
async fn without_origin_fallback_no_healthy_replica_is_a_503() {
    let cluster = TestCluster::new();
    let down = StandIn::start(&cluster, "down").await;
    down.set_healthz(StatusCode::INTERNAL_SERVER_ERROR, json!({}));
    let urls = vec![down.url()];
    let mut config = config(&urls, "https://127.0.0.1:9");
    config.fallback_to_origin = false;
    let controller = start_controller(&cluster, config).await;
    let client = client(&cluster);
    wait_for(&client, &controller.url(), "the replica down", |v| {
        replica(v, &urls[0]).is_some_and(|r| r["state"] == "down")
    })
    .await;

    let response = client
        .get(format!("{}/v.mp4", controller.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
    assert!(down.seen().is_empty());
}

#[tokio::test]
async fn a_replica_saying_it_is_not_ok_leaves_rotation() {
    let cluster = TestCluster::new();
    let a = StandIn::start(&cluster, "a").await;
    let b = StandIn::start(&cluster, "b").await;
    let urls = vec![a.url(), b.url()];
    let controller = start_controller(&cluster, config(&urls, "https://127.0.0.1:9")).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;

    a.set_healthz(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"status": "draining", "role": "replica"}),
    );
    let (view, _) = wait_healthy(&client, &controller.url(), &[b.url()]).await;
    let entry = replica(&view, &a.url()).unwrap();
    assert_eq!(entry["state"], "down");
    assert!(
        entry["reason"].as_str().unwrap().contains("draining"),
        "{entry}"
    );
    for _ in 0..10 {
        let to = location(&client, &format!("{}/v.mp4", controller.url())).await;
        assert!(to.starts_with(&b.url()), "{to}");
    }
}

#[tokio::test]
async fn an_overloaded_replica_gets_no_new_viewers_until_its_load_drops() {
    let cluster = TestCluster::new();
    let busy = StandIn::start(&cluster, "busy").await;
    let idle = StandIn::start(&cluster, "idle").await;
    busy.report(json!({"active_streams": 150}));
    idle.report(json!({"active_streams": 3}));
    let urls = vec![busy.url(), idle.url()];
    let mut config = config(&urls, "https://127.0.0.1:9");
    config.max_active_streams = Some(100);
    let controller = start_controller(&cluster, config).await;
    let client = client(&cluster);
    let (view, _) = wait_healthy(&client, &controller.url(), &[idle.url()]).await;
    assert_eq!(replica(&view, &busy.url()).unwrap()["state"], "overloaded");

    for _ in 0..10 {
        let to = location(&client, &format!("{}/v.mp4", controller.url())).await;
        assert!(to.starts_with(&idle.url()), "{to}");
    }

    busy.report(json!({"active_streams": 20}));
    wait_healthy(&client, &controller.url(), &urls).await;
    let mut sent = Vec::new();
    for _ in 0..10 {
        sent.push(location(&client, &format!("{}/v.mp4", controller.url())).await);
    }
    assert_eq!(common::spread(sent).get(&busy.url()), Some(&5));
}

#[tokio::test]
async fn when_every_replica_is_overloaded_the_least_loaded_still_serves() {
    let cluster = TestCluster::new();
    let a = StandIn::start(&cluster, "a").await;
    let b = StandIn::start(&cluster, "b").await;
    a.report(json!({"active_streams": 500}));
    b.report(json!({"active_streams": 200}));
    let urls = vec![a.url(), b.url()];
    let mut config = config(&urls, "https://127.0.0.1:9");
    config.max_active_streams = Some(100);
    let controller = start_controller(&cluster, config).await;
    let client = client(&cluster);
    wait_for(&client, &controller.url(), "both overloaded", |v| {
        urls.iter()
            .all(|u| replica(v, u).is_some_and(|r| r["state"] == "overloaded"))
    })
    .await;
    let to = location(&client, &format!("{}/v.mp4", controller.url())).await;
    assert!(to.starts_with(&b.url()), "{to}");
}
