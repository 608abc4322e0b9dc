//! Nothing assumes one host: origin, two replicas and the controller each
//! listen on their own loopback address (127.0.0.2 to .5, standing in for
//! separate machines), find each other only by the URLs they are given,
//! and verify each other's certificate, issued for those addresses by the
//! cluster's CA. A viewer plays a video through the controller.

mod common;

use std::net::SocketAddr;

use common::{replica, wait_for};
use http::{StatusCode, header};
use vcdn_http::tls::{Identity, LocalPki};
use vcdn_http::{CancellationToken, Serving};
use vcdn_test_support::{TestCluster, pattern};

fn at(host: [u8; 4]) -> SocketAddr {
    SocketAddr::from((host, 0))
}

fn url(addr: SocketAddr) -> String {
    format!("https://{}:{}", addr.ip(), addr.port())
}

#[tokio::test]
async fn a_cluster_on_separate_addresses_plays_a_video_through_the_controller() {
    let cluster = TestCluster::new();
    let video = pattern(700_000, 9);
    cluster.put_video("v.mp4", &video);
    let hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"].map(str::to_owned);
    let cert_dir = cluster.pki.ca_cert.parent().unwrap().to_owned();
    let pki = LocalPki::issue(&cert_dir, &hosts).unwrap();
    let serving = Serving {
        tls: Identity::from_files(&pki.cert, &pki.key)
            .unwrap()
            .server_config()
            .unwrap(),
        limits: cluster.serving.limits.clone(),
    };
    let shutdown = CancellationToken::new();
    let _stop_all = shutdown.clone().drop_guard();

    let origin = vcdn_origin::build(
        &vcdn_origin::Config {
            listen: at([127, 0, 0, 2]),
            videos_dir: cluster.videos_dir(),
            ..vcdn_origin::Config::default()
        },
        &serving,
    )
    .await
    .unwrap();
    let origin_url = url(origin.local_addr());
    tokio::spawn(origin.run(shutdown.clone()));

    let mut replica_urls = Vec::new();
    for (i, host) in [[127, 0, 0, 3], [127, 0, 0, 4]].into_iter().enumerate() {
        let replica = vcdn_replica::build(
            &vcdn_replica::Config {
                listen: at(host),
                origin: origin_url.clone(),
                origin_ca_file: Some(pki.ca_cert.clone()),
                cache_dir: cluster.path(&format!("cache-{i}")),
                ..vcdn_replica::Config::default()
            },
            &serving,
        )
        .await
        .unwrap();
        replica_urls.push(url(replica.local_addr()));
        tokio::spawn(replica.run(shutdown.clone()));
    }

    let controller = vcdn_controller::build(
        &vcdn_controller::Config {
            listen: at([127, 0, 0, 5]),
            replicas: replica_urls.clone(),
            origin: origin_url.clone(),
            ca_file: Some(pki.ca_cert.clone()),
            ..vcdn_controller::Config::default()
        },
        &serving,
    )
    .await
    .unwrap();
    let controller_url = url(controller.local_addr());
    tokio::spawn(controller.run(shutdown.clone()));

    let client = common::client(&cluster);
    wait_for(&client, &controller_url, "both replicas healthy", |v| {
        replica_urls
            .iter()
            .all(|u| replica(v, u).is_some_and(|r| r["healthy"] == true))
    })
    .await;

    let catalog = common::json(
        client
            .get(format!("{controller_url}/api/videos"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(catalog["videos"][0]["path"], "/v.mp4");

    for _ in 0..2 {
        let redirect = client
            .get(format!("{controller_url}/v.mp4"))
            .send()
            .await
            .unwrap();
        assert_eq!(redirect.status(), StatusCode::FOUND);
        let location = redirect.headers()[header::LOCATION].to_str().unwrap();
        assert!(
            replica_urls
                .iter()
                .any(|u| location.starts_with(u.as_str())),
            "{location}"
        );
        let played = client
            .get(location)
            .header(header::RANGE, "bytes=0-")
            .send()
            .await
            .unwrap();
        assert_eq!(played.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(played.bytes().await.unwrap(), video);
    }
}
