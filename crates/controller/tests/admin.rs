//! The admin API: authentication, replicas joining and leaving at run
//! time, heartbeats, and purge/prefetch fan-out.

mod common;

use common::{
    ADMIN_TOKEN, REPLICA_TOKEN, StandIn, client, config, json, location, replica, start_controller,
    wait_for, wait_healthy,
};
use http::{Method, StatusCode, header};
use serde_json::{Value, json};
use vcdn_controller::Token;
use vcdn_test_support::TestCluster;

fn admin_config(replicas: &[String]) -> vcdn_controller::Config {
    let mut config = config(replicas, "https://127.0.0.1:9");
    config.admin_token = Some(Token::new(ADMIN_TOKEN));
    config.replica_admin_token = Some(Token::new(REPLICA_TOKEN));
    config
}

async fn admin(
    client: &reqwest::Client,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut request = client
        .request(method, url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, json(response).await)
}

#[tokio::test]
async fn admin_calls_without_or_with_a_wrong_token_are_401_and_change_nothing() {
    let cluster = TestCluster::new();
    let a = StandIn::start(&cluster, "a").await;
    let newcomer = StandIn::start(&cluster, "newcomer").await;
    let urls = vec![a.url()];
    let controller = start_controller(&cluster, admin_config(&urls)).await;
    let client = client(&cluster);
    wait_healthy(&client, &controller.url(), &urls).await;
    let base = controller.url();

    let calls = [
        (
            Method::POST,
            "/admin/replicas",
            json!({"url": newcomer.url()}),
        ),
        (Method::DELETE, "/admin/replicas", json!({"url": a.url()})),
        (
            Method::POST,
            "/admin/heartbeat",
            json!({"url": newcomer.url(), "name": "n"}),
        ),
        (Method::POST, "/admin/purge", json!({"prefix": "/"})),
        (
            Method::POST,
            "/admin/prefetch",
            json!({"paths": ["/x.mp4"]}),
        ),
    ];
    let wrong = format!("{ADMIN_TOKEN}x");
    for token in [
        None,
        Some("nope"),
        Some(wrong.as_str()),
        Some(REPLICA_TOKEN),
    ] {
        for (method, path, body) in &calls {
            let (status, answer) = admin(
                &client,
                method.clone(),
                format!("{base}{path}"),
                token,
                body.clone(),
            )
            .await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}"
            );
            assert!(answer["error"].is_string());
        }
    }
    // A different scheme carrying the right token is still refused.
    let basic = client
        .post(format!("{base}/admin/purge"))
        .header(header::AUTHORIZATION, format!("Basic {ADMIN_TOKEN}"))
        .body(json!({"prefix": "/"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    let view = common::cluster_view(&client, &base).await;
    assert_eq!(view["total"], 1);
    assert!(replica(&view, &a.url()).is_some());
    assert!(a.seen().is_empty(), "a replica was called: {:?}", a.seen());
    assert!(newcomer.seen().is_empty());
}

#[tokio::test]
async fn the_admin_api_is_off_without_a_token() {
    let cluster = TestCluster::new();
    let a = StandIn::start(&cluster, "a").await;
    let controller = start_controller(&cluster, config(&[a.url()], "https://127.0.0.1:9")).await;
    let client = client(&cluster);
    let (status, _) = admin(
        &client,
        Method::POST,
        format!("{}/admin/purge", controller.url()),
        Some(ADMIN_TOKEN),
        json!({"prefix": "/"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(a.seen().is_empty());
}

#[tokio::test]
async fn a_replica_joining_at_run_time_receives_traffic_and_leaving_stops_it() {
    let cluster = TestCluster::new();
    let a = StandIn::start(&cluster, "a").await;
    let b = StandIn::start(&cluster, "b").await;
    let controller = start_controller(&cluster, admin_config(&[a.url()])).await;
    let client = client(&cluster);
    let base = controller.url();
    wait_healthy(&client, &base, &[a.url()]).await;

    let (status, joined) = admin(
        &client,
        Method::POST,
        format!("{base}/admin/replicas"),
        Some(ADMIN_TOKEN),
        json!({"url": format!("{}/", b.url())}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(joined["url"], b.url());
    assert_eq!(joined["source"], "admin");
    let (status, _) = admin(
        &client,
        Method::POST,
        format!("{base}/admin/replicas"),
        Some(ADMIN_TOKEN),
        json!({"url": b.url()}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "joining twice is not an error");

    wait_healthy(&client, &base, &[a.url(), b.url()]).await;
    let mut sent = Vec::new();
    for _ in 0..10 {
        sent.push(location(&client, &format!("{base}/v.mp4")).await);
    }
    assert_eq!(common::spread(sent).get(&b.url()), Some(&5));

    let (status, _) = admin(
        &client,
        Method::DELETE,
        format!("{base}/admin/replicas"),
        Some(ADMIN_TOKEN),
        json!({"url": b.url()}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let view = common::cluster_view(&client, &base).await;
    assert!(replica(&view, &b.url()).is_none());
    for _ in 0..10 {
        assert!(
            location(&client, &format!("{base}/v.mp4"))
                .await
                .starts_with(&a.url())
        );
    }
    let (status, _) = admin(
        &client,
        Method::DELETE,
        format!("{base}/admin/replicas"),
        Some(ADMIN_TOKEN),
        json!({"url": b.url()}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = admin(
        &client,
        Method::POST,
        format!("{base}/admin/replicas"),
        Some(ADMIN_TOKEN),
        json!({"url": "ftp://nope"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_heartbeat_adds_an_unknown_replica_and_silence_drops_it() {
    let cluster = TestCluster::new();
    let a = StandIn::start(&cluster, "a").await;
    let b = StandIn::start(&cluster, "vcdn-b").await;
    let mut config = admin_config(&[a.url()]);
    config.heartbeat_expiry_ms = 3_000;
    let controller = start_controller(&cluster, config).await;
    let client = client(&cluster);
    let base = controller.url();

    let beat = || {
        admin(
            &client,
            Method::POST,
            format!("{base}/admin/heartbeat"),
            Some(ADMIN_TOKEN),
            json!({"url": b.url(), "name": "vcdn-b"}),
        )
    };
    let (status, answer) = beat().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["joined"], true);
    let (view, _) = wait_healthy(&client, &base, &[a.url(), b.url()]).await;
    let entry = replica(&view, &b.url()).unwrap();
    assert_eq!(entry["source"], "heartbeat");
    assert_eq!(entry["name"], "vcdn-b");
    let (_, answer) = beat().await;
    assert_eq!(answer["joined"], false);

    let mut sent = Vec::new();
    for _ in 0..10 {
        sent.push(location(&client, &format!("{base}/v.mp4")).await);
    }
    assert_eq!(common::spread(sent).get(&b.url()), Some(&5));

    // No more heartbeats: it is dropped, though it still answers probes.
    wait_for(&client, &base, "the silent replica dropped", |v| {
        replica(v, &b.url()).is_none()
    })
    .await;
    assert!(replica(&common::cluster_view(&client, &base).await, &a.url()).is_some());
}

#[tokio::test]
async fn purge_and_prefetch_fan_out_to_the_replicas_with_the_replica_token() {
    let cluster = TestCluster::new();
    let a = StandIn::start(&cluster, "a").await;
    let b = StandIn::start(&cluster, "b").await;
    let urls = vec![a.url(), b.url()];
    let controller = start_controller(&cluster, admin_config(&urls)).await;
    let client = client(&cluster);
    let base = controller.url();
    wait_healthy(&client, &base, &urls).await;

    let (status, answer) = admin(
        &client,
        Method::POST,
        format!("{base}/admin/purge"),
        Some(ADMIN_TOKEN),
        json!({"prefix": "/show/"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["replicas"].as_array().unwrap().len(), 2);
    for stand_in in [&a, &b] {
        let seen = stand_in.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path, "/admin/purge");
        assert_eq!(
            seen[0].authorization.as_deref(),
            Some(format!("Bearer {REPLICA_TOKEN}").as_str())
        );
        let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(body, json!({"prefix": "/show/"}));
    }

    let (status, answer) = admin(
        &client,
        Method::POST,
        format!("{base}/admin/prefetch"),
        Some(ADMIN_TOKEN),
        json!({"paths": ["/a.mp4", "/b.mp4"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let entry = answer["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["url"] == a.url())
        .unwrap();
    assert_eq!(entry["response"]["job"], "a-job-1");
    let body: Value = serde_json::from_slice(&b.seen()[1].body).unwrap();
    assert_eq!(body, json!({"paths": ["/a.mp4", "/b.mp4"]}));

    // A replica that fails is reported, and the call as a whole is a 502.
    b.set_admin_status(StatusCode::INTERNAL_SERVER_ERROR);
    let (status, answer) = admin(
        &client,
        Method::POST,
        format!("{base}/admin/purge"),
        Some(ADMIN_TOKEN),
        json!({"path": "/x.mp4"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer["ok"], false);
    let failed = answer["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["url"] == b.url())
        .unwrap();
    assert_eq!(failed["ok"], false);
    assert_eq!(failed["status"], 500);

    // Malformed bodies are refused before any replica is called.
    let calls_before = a.seen().len();
    for body in [
        json!({}),
        json!({"path": "/x", "prefix": "/"}),
        json!({"path": "x.mp4"}),
        json!({"url": "/x"}),
    ] {
        let (status, _) = admin(
            &client,
            Method::POST,
            format!("{base}/admin/purge"),
            Some(ADMIN_TOKEN),
            body,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(a.seen().len(), calls_before);
}
