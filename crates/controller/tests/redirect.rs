//! Redirect mode against real replicas and a real origin: where viewers
//! are sent, with which headers, and how evenly.

mod common;

use common::{Running, client, config, location, start_controller, wait_healthy};
use http::{Method, StatusCode, header};
use vcdn_test_support::{TestCluster, pattern};

/// An origin with one video and `n` real replicas in front of it.
async fn cluster_with_replicas(n: usize) -> (TestCluster, Vec<Running>, Vec<u8>) {
    let mut cluster = TestCluster::new();
    let video = pattern(300_000, 7);
    cluster.put_video("v.mp4", &video);
    cluster.start_origin().await;
    let origin = cluster.origin_url();
    let mut replicas = Vec::new();
    for i in 0..n {
        replicas.push(
            common::start_replica_at(
                &cluster,
                &origin,
                "127.0.0.1:0".parse().unwrap(),
                &format!("cache-{i}"),
            )
            .await,
        );
    }
    (cluster, replicas, video)
}

#[tokio::test]
async fn redirect_sends_a_viewer_to_a_healthy_replica_with_cors_headers() {
    let (cluster, replicas, video) = cluster_with_replicas(1).await;
    let urls: Vec<String> = replicas.iter().map(Running::url).collect();
    let controller = start_controller(&cluster, config(&urls, &cluster.origin_url())).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;

    let response = client
        .get(format!("{}/v.mp4?token=abc&t=5", controller.url()))
        .header(header::ORIGIN, "https://player.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let headers = response.headers();
    let location = headers[header::LOCATION].to_str().unwrap();
    assert_eq!(location, format!("{}/v.mp4?token=abc&t=5", urls[0]));
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");

    // The viewer follows the redirect and gets the video's bytes.
    let ranged = client
        .get(location)
        .header(header::RANGE, "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.bytes().await.unwrap(), &video[1000..2000]);
}

#[tokio::test]
async fn preflight_is_answered_directly_not_redirected() {
    let (cluster, replicas, _) = cluster_with_replicas(1).await;
    let urls: Vec<String> = replicas.iter().map(Running::url).collect();
    let controller = start_controller(&cluster, config(&urls, &cluster.origin_url())).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;

    let response = client
        .request(Method::OPTIONS, format!("{}/v.mp4", controller.url()))
        .header(header::ORIGIN, "https://player.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "range")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert!(response.headers().get(header::LOCATION).is_none());
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let allowed = response.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("range"), "{allowed}");
}

#[tokio::test]
async fn round_robin_spreads_new_viewers_evenly_over_all_healthy_replicas() {
    let (cluster, replicas, _) = cluster_with_replicas(3).await;
    let urls: Vec<String> = replicas.iter().map(Running::url).collect();
    let controller = start_controller(&cluster, config(&urls, &cluster.origin_url())).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;

    let mut locations = Vec::new();
    for _ in 0..30 {
        locations.push(location(&client, &format!("{}/v.mp4", controller.url())).await);
    }
    let spread = common::spread(locations);
    for url in &urls {
        assert_eq!(spread.get(url), Some(&10), "{spread:?}");
    }
}

#[tokio::test]
async fn head_is_routed_and_other_methods_are_refused() {
    let (cluster, replicas, _) = cluster_with_replicas(1).await;
    let urls: Vec<String> = replicas.iter().map(Running::url).collect();
    let controller = start_controller(&cluster, config(&urls, &cluster.origin_url())).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;

    let head = client
        .head(format!("{}/v.mp4", controller.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::FOUND);
    let post = client
        .post(format!("{}/v.mp4", controller.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_controllers_own_paths_are_never_routed() {
    let (cluster, replicas, _) = cluster_with_replicas(1).await;
    let urls: Vec<String> = replicas.iter().map(Running::url).collect();
    let controller = start_controller(&cluster, config(&urls, &cluster.origin_url())).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;

    for path in ["/api/nothing", "/api", "/admin/anything", "/admin"] {
        let response = client
            .get(format!("{}{path}", controller.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let healthz = common::json(
        client
            .get(format!("{}/healthz", controller.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(healthz["status"], "ok");
    assert_eq!(healthz["role"], "controller");
    assert_eq!(healthz["healthy"], 1);
}
