//! Proxy mode: the controller streams a replica's response through.

mod common;

use common::{
    ADMIN_TOKEN, Content, Running, StandIn, client, config, start_controller, start_replica_at,
    wait_healthy,
};
use std::sync::Arc;

use bytes::Bytes;
use http::{StatusCode, header};
use tokio::sync::Notify;
use vcdn_controller::{Mode, Token};
use vcdn_test_support::{TestCluster, pattern, sha256};

const LEN: usize = 3 * 1024 * 1024 + 17;

async fn origin_with_video() -> (TestCluster, Vec<u8>) {
    let mut cluster = TestCluster::new();
    let video = pattern(LEN, 11);
    cluster.put_video("movie.mp4", &video);
    for i in 0..6 {
        cluster.put_video(&format!("short-{i}.mp4"), &video[..100_000]);
    }
    cluster.start_origin().await;
    (cluster, video)
}

#[tokio::test]
async fn proxy_streams_the_replicas_bytes_with_range_passed_through() {
    let (cluster, video) = origin_with_video().await;
    let replica = start_replica_at(
        &cluster,
        &cluster.origin_url(),
        "127.0.0.1:0".parse().unwrap(),
        "cache",
    )
    .await;
    let urls = vec![replica.url()];
    let mut config = config(&urls, &cluster.origin_url());
    config.mode = Mode::Proxy;
    let controller = start_controller(&cluster, config).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;
    let url = format!("{}/movie.mp4", controller.url());

    let ranged = client
        .get(&url)
        .header(header::RANGE, "bytes=1000000-1000999")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        ranged.headers()[header::CONTENT_RANGE],
        format!("bytes 1000000-1000999/{LEN}").as_str()
    );
    assert!(ranged.headers().get("x-served-by").is_some());
    assert_eq!(ranged.bytes().await.unwrap(), &video[1_000_000..1_001_000]);

    let full = client.get(&url).send().await.unwrap();
    assert_eq!(full.status(), StatusCode::OK);
    assert_eq!(
        full.headers()[header::CONTENT_LENGTH],
        LEN.to_string().as_str()
    );
    assert_eq!(sha256(&full.bytes().await.unwrap()), sha256(&video));

    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()[header::CONTENT_LENGTH],
        LEN.to_string().as_str()
    );
}

#[tokio::test]
async fn proxy_fails_over_to_the_next_replica_before_the_first_byte() {
    let (cluster, video) = origin_with_video().await;
    let broken = StandIn::start(&cluster, "broken").await;
    broken.set_content(Content::BrokenBody);
    let draining = StandIn::start(&cluster, "draining").await;
    draining.set_content(Content::Unavailable);
    let good = start_replica_at(
        &cluster,
        &cluster.origin_url(),
        "127.0.0.1:0".parse().unwrap(),
        "cache",
    )
    .await;
    let urls = vec![broken.url(), draining.url(), good.url()];
    let mut config = config(&urls, &cluster.origin_url());
    config.mode = Mode::Proxy;
    // The origin fallback would hide a failover that did not happen.
    config.fallback_to_origin = false;
    let controller = start_controller(&cluster, config).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;

    // Round-robin starts each request at the next replica, so over six
    // videos (distinct, so stickiness does not pin them) each stand-in is
    // tried first twice.
    for i in 0..6 {
        let response = client
            .get(format!("{}/short-{i}.mp4", controller.url()))
            .header(header::RANGE, "bytes=0-65535")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::PARTIAL_CONTENT,
            "request {i}"
        );
        assert_eq!(response.bytes().await.unwrap(), &video[..65536]);
    }
    assert!(
        !broken.seen().is_empty(),
        "the broken replica was never tried"
    );
    assert!(
        !draining.seen().is_empty(),
        "the draining replica was never tried"
    );
}

#[tokio::test]
async fn a_viewers_requests_for_one_video_stay_on_one_replica() {
    let (cluster, video) = origin_with_video().await;
    let mut replicas: Vec<Running> = Vec::new();
    for i in 0..3 {
        replicas.push(
            start_replica_at(
                &cluster,
                &cluster.origin_url(),
                "127.0.0.1:0".parse().unwrap(),
                &format!("cache-{i}"),
            )
            .await,
        );
    }
    let urls: Vec<String> = replicas.iter().map(Running::url).collect();
    let mut config = config(&urls, &cluster.origin_url());
    config.mode = Mode::Proxy;
    let controller = start_controller(&cluster, config).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;

    let mut served_by = Vec::new();
    for start in (0..LEN).step_by(512 * 1024) {
        let end = (start + 100_000).min(LEN) - 1;
        let response = client
            .get(format!("{}/movie.mp4", controller.url()))
            .header(header::RANGE, format!("bytes={start}-{end}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        served_by.push(
            response.headers()["x-served-by"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        assert_eq!(response.bytes().await.unwrap(), &video[start..=end]);
    }
    served_by.dedup();
    assert_eq!(served_by.len(), 1, "{served_by:?}");
}

#[tokio::test]
async fn proxy_falls_back_to_the_origin_when_no_replica_is_healthy() {
    let (cluster, video) = origin_with_video().await;
    let replica = start_replica_at(
        &cluster,
        &cluster.origin_url(),
        "127.0.0.1:0".parse().unwrap(),
        "cache",
    )
    .await;
    let urls = vec![replica.url()];
    let mut config = config(&urls, &cluster.origin_url());
    config.mode = Mode::Proxy;
    let controller = start_controller(&cluster, config).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;
    replica.stop().await;
    wait_healthy(&client, &controller.url(), &[]).await;

    let response = client
        .get(format!("{}/movie.mp4", controller.url()))
        .header(header::RANGE, "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert!(response.headers().get("x-served-by").is_none());
    assert_eq!(response.bytes().await.unwrap(), &video[10..20]);
}

/// The ETag a dying replica announces.
enum Announce {
    /// The origin's, as a real replica replays it: resumable.
    OriginsETag,
    /// This one (or none).
    Other(Option<&'static str>),
}

/// What a viewer got from a proxied download whose replica died mid-body.
struct Outcome {
    body: reqwest::Result<Bytes>,
    video: Vec<u8>,
    good_url: String,
    controller_metrics: String,
}

/// One proxied download of the movie from a replica that sends its first
/// megabyte and then dies, announcing `announce`; meanwhile a good replica
/// joins the cluster.
async fn download_from_a_replica_dying_mid_body(announce: Announce) -> Outcome {
    let (cluster, video) = origin_with_video().await;
    let client = client(&cluster);
    let etag = match announce {
        Announce::OriginsETag => client
            .head(format!("{}/movie.mp4", cluster.origin_url()))
            .send()
            .await
            .unwrap()
            .headers()
            .get(header::ETAG)
            .map(|v| v.to_str().unwrap().to_owned()),
        Announce::Other(etag) => etag.map(str::to_owned),
    };
    let dying = StandIn::start(&cluster, "dying").await;
    let die = Arc::new(Notify::new());
    dying.set_content(Content::DiesMidBody {
        body: Bytes::from(video.clone()),
        etag,
        after: 1_000_000,
        die: die.clone(),
    });
    let good = start_replica_at(
        &cluster,
        &cluster.origin_url(),
        "127.0.0.1:0".parse().unwrap(),
        "cache",
    )
    .await;
    let mut config = config(&[dying.url()], &cluster.origin_url());
    config.mode = Mode::Proxy;
    config.fallback_to_origin = false;
    config.admin_token = Some(Token::new(ADMIN_TOKEN));
    let controller = start_controller(&cluster, config).await;
    // Only the dying replica is known when the viewer starts.
    wait_healthy(&client, &controller.url(), &[dying.url()]).await;
    let response = client
        .get(format!("{}/movie.mp4", controller.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-served-by"], "dying");

    // Another replica joins; then the first one dies mid-body.
    let joined = client
        .post(format!("{}/admin/replicas", controller.url()))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "url": good.url() }))
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), StatusCode::CREATED);
    wait_healthy(&client, &controller.url(), &[dying.url(), good.url()]).await;
    die.notify_one();
    let body = response.bytes().await;
    let controller_metrics = client
        .get(format!("{}/metrics", controller.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    Outcome {
        body,
        video,
        good_url: good.url(),
        controller_metrics,
    }
}

#[tokio::test]
async fn a_replica_dying_mid_body_is_resumed_from_another_without_the_viewer_noticing() {
    let got = download_from_a_replica_dying_mid_body(Announce::OriginsETag).await;
    let body = got.body.expect("the body completes");
    assert_eq!(body.len(), got.video.len());
    assert_eq!(sha256(&body), sha256(&got.video), "every byte, in order");
    let resumed = format!(
        "vcdn_controller_proxy_resumes_total{{replica=\"{}\"}} 1",
        got.good_url
    );
    assert!(
        got.controller_metrics.contains(&resumed),
        "{}",
        got.controller_metrics
    );
}

#[tokio::test]
async fn a_body_without_a_strong_etag_is_aborted_not_spliced() {
    for etag in [None, Some("W/\"weak\"")] {
        let got = download_from_a_replica_dying_mid_body(Announce::Other(etag)).await;
        assert!(got.body.is_err(), "{etag:?}: aborted, not ended short");
    }
}

#[tokio::test]
async fn a_body_is_not_continued_from_another_version() {
    // The other replica's If-Range fails: it has the origin's version.
    let got = download_from_a_replica_dying_mid_body(Announce::Other(Some("\"another\""))).await;
    assert!(got.body.is_err(), "never spliced from two versions");
}
