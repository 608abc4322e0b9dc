//! Graceful shutdown of a listener: what is in flight finishes, nothing new
//! is accepted.

use vcdn_test_support::{TestCluster, pattern, sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_downloads_finish_and_refuses_new_ones() {
    for http1 in [false, true] {
        let mut cluster = TestCluster::new();
        let file = pattern(8 * 1024 * 1024 + 7, 99);
        cluster.put_video("long.mp4", &file);
        cluster.start_origin().await;
        let url = format!("{}/long.mp4", cluster.origin_url());
        let client = if http1 {
            cluster.http1_client()
        } else {
            cluster.client()
        };

        let mut response = client.get(&url).send().await.unwrap();
        let mut body = response.chunk().await.unwrap().unwrap().to_vec();

        let origin = cluster.origin.take().unwrap();
        let stopped = tokio::spawn(origin.stop());
        while let Some(piece) = response.chunk().await.unwrap() {
            body.extend_from_slice(&piece);
        }
        assert_eq!(
            sha256(&body),
            sha256(&file),
            "the in-flight download completed"
        );
        stopped.await.unwrap();

        let fresh = vcdn_test_support::client_trusting(
            &cluster.pki.ca_cert,
            vcdn_test_support::Protocol::Auto,
        );
        assert!(
            fresh.get(&url).send().await.is_err(),
            "a stopped origin accepts nothing"
        );
    }
}
