//! A replica process killed with SIGKILL comes back with its cache: what
//! was stored before the kill is served as hits, byte for byte.

mod common;

use common::ReplicaProcess;
use vcdn_test_support::origin::Content;
use vcdn_test_support::{Protocol, TestCluster, client_trusting, sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_with_sigkill_serves_its_earlier_content_as_hits() {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    let cache = cluster.path("replica-cache");
    let files: Vec<Content> = (0..3u64)
        .map(|i| Content::Virtual {
            len: 3 * 1024 * 1024 + i * 4321,
            seed: 70 + i,
        })
        .collect();
    for (i, content) in files.iter().enumerate() {
        origin.put(&format!("/k{i}.mp4"), content.clone());
    }
    let client = client_trusting(&cluster.pki.ca_cert, Protocol::Auto);

    let replica = ReplicaProcess::start(&cluster, &origin.url(), &cache).await;
    for (i, content) in files.iter().enumerate() {
        let body = client
            .get(format!("{}/k{i}.mp4", replica.url()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(sha256(&body), content.sha256());
    }
    replica.kill();
    let fetched = origin.requests().len();

    let replica = ReplicaProcess::start(&cluster, &origin.url(), &cache).await;
    for (i, content) in files.iter().enumerate() {
        let response = client
            .get(format!("{}/k{i}.mp4", replica.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-cache"], "HIT", "k{i} after SIGKILL");
        assert_eq!(sha256(&response.bytes().await.unwrap()), content.sha256());
    }
    assert_eq!(origin.requests().len(), fetched, "nothing fetched again");
}
