//! A real replica given the controller's URL announces itself, joins the
//! rotation, and receives viewers; stopped, it stops announcing and is
//! dropped.

mod common;

use common::{ADMIN_TOKEN, client, config, location, replica, start_controller, wait_for};
use vcdn_controller::Token;
use vcdn_http::CancellationToken;
use vcdn_test_support::{TestCluster, pattern};

#[tokio::test]
async fn a_real_replica_joins_by_heartbeat_and_is_dropped_when_it_stops() {
    let mut cluster = TestCluster::new();
    let video = pattern(100_000, 5);
    cluster.put_video("v.mp4", &video);
    cluster.start_origin().await;
    let mut config = config(&[], &cluster.origin_url());
    config.admin_token = Some(Token::new(ADMIN_TOKEN));
    config.heartbeat_expiry_ms = 5_000;
    let controller = start_controller(&cluster, config).await;
    let client = client(&cluster);

    let replica_config = vcdn_replica::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        origin: cluster.origin_url(),
        origin_ca_file: Some(cluster.pki.ca_cert.clone()),
        cache_dir: cluster.path("cache"),
        controller: Some(controller.url()),
        controller_token: Some(ADMIN_TOKEN.to_owned()),
        ..vcdn_replica::Config::default()
    };
    let built = vcdn_replica::build(&replica_config, &cluster.serving)
        .await
        .unwrap();
    let port = built.local_addr().port();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(built.run(shutdown.clone()));

    // It announces `https://localhost:<port>` (its default public URL).
    let url = format!("https://localhost:{port}");
    let (view, _) = wait_for(&client, &controller.url(), "the replica announced", |v| {
        replica(v, &url).is_some_and(|r| r["healthy"] == true)
    })
    .await;
    let entry = replica(&view, &url).unwrap();
    assert_eq!(entry["source"], "heartbeat");
    assert_eq!(entry["name"], format!("vcdn-{port}"));

    let to = location(&client, &format!("{}/v.mp4", controller.url())).await;
    assert_eq!(to, format!("{url}/v.mp4"));
    let body = client.get(&to).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(body, video);

    shutdown.cancel();
    task.await.unwrap().unwrap();
    wait_for(
        &client,
        &controller.url(),
        "the silent replica dropped",
        |v| replica(v, &url).is_none(),
    )
    .await;
}
