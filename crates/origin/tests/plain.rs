//! The optional plain-HTTP listener serves the same content as HTTPS.

use std::net::SocketAddr;

use vcdn_http::CancellationToken;
use vcdn_test_support::{TestCluster, pattern, sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_http_listener_serves_the_same_bytes() {
    let cluster = TestCluster::new();
    let file = pattern(300_000, 5);
    cluster.put_video("p.mp4", &file);
    let config = vcdn_origin::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        plain_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        videos_dir: cluster.videos_dir(),
        ..Default::default()
    };
    let origin = vcdn_origin::build(&config, &cluster.serving).await.unwrap();
    let plain = origin.plain_addr().expect("plain listener bound");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(origin.run(shutdown.clone()));

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client
        .get(format!("http://{plain}/p.mp4"))
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.bytes().await.unwrap(), file[1000..2000]);
    let whole = client
        .get(format!("http://{plain}/p.mp4"))
        .send()
        .await
        .unwrap();
    assert_eq!(sha256(&whole.bytes().await.unwrap()), sha256(&file));
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
