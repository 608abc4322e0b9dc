//! What the controller's integration tests share: starting a controller
//! (and replicas on fixed addresses, for restarts) inside a `TestCluster`,
//! a small real HTTPS stand-in replica whose `/healthz` and behaviour a test
//! controls, and helpers that poll `/api/cluster` until the controller sees
//! what a test waits for.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};
use vcdn_http::Server;
use vcdn_test_support::TestCluster;

/// The admin token the tests configure.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// The token the controller sends to replicas.
pub const REPLICA_TOKEN: &str = "test-replica-token-abcdef";

/// Guards against a hang only: the state waited for normally arrives in
/// about a second.
pub const WAIT_GUARD: Duration = Duration::from_secs(30);

/// A role or stand-in running in the test process.
pub type Running = vcdn_test_support::RoleHandle;

/// A controller configuration for tests: the given replicas and origin,
/// the default strategy and mode.
pub fn config(replicas: &[String], origin: &str) -> vcdn_controller::Config {
    vcdn_controller::Config {
        replicas: replicas.to_vec(),
        origin: origin.to_owned(),
        ..vcdn_controller::Config::default()
    }
}

/// Starts a controller on an ephemeral port, trusting the cluster's CA.
pub async fn start_controller(
    cluster: &TestCluster,
    mut config: vcdn_controller::Config,
) -> Running {
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.ca_file = Some(cluster.pki.ca_cert.clone());
    let controller = vcdn_controller::build(&config, &cluster.serving)
        .await
        .expect("controller starts");
    let addr = controller.local_addr();
    Running::spawn(addr, |token| controller.run(token))
}

/// Starts a real replica of `origin_url` on `addr` (port 0 for any), so a
/// test can restart one on the address it had.
pub async fn start_replica_at(
    cluster: &TestCluster,
    origin_url: &str,
    addr: SocketAddr,
    cache: &str,
) -> Running {
    let config = vcdn_replica::Config {
        listen: addr,
        origin: origin_url.to_owned(),
        origin_ca_file: Some(cluster.pki.ca_cert.clone()),
        cache_dir: cluster.path(cache),
        ..vcdn_replica::Config::default()
    };
    let replica = vcdn_replica::build(&config, &cluster.serving)
        .await
        .expect("replica starts");
    let addr = replica.local_addr();
    Running::spawn(addr, |token| replica.run(token))
}

/// How a stand-in answers viewer requests.
#[derive(Debug, Clone)]
pub enum Content {
    /// 200 with these bytes and `X-Served-By: <name>`.
    Serve(Bytes),
    /// 200 whose body fails before its first byte.
    BrokenBody,
    /// 503, as a replica that is shutting down.
    Unavailable,
    /// 200 announcing all of `body` (with `etag`, if any), sending its
    /// first `after` bytes, then failing once `die` is notified: a replica
    /// that dies mid-body.
    DiesMidBody {
        body: Bytes,
        etag: Option<String>,
        after: usize,
        die: Arc<tokio::sync::Notify>,
    },
}

/// One request a stand-in received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Bytes,
}

struct StandInState {
    name: String,
    healthz: Mutex<(StatusCode, Value)>,
    content: Mutex<Content>,
    admin_status: Mutex<StatusCode>,
    seen: Mutex<Vec<Seen>>,
}

/// A tiny real HTTPS replica stand-in built on the shared serving layer.
pub struct StandIn {
    pub running: Running,
    state: Arc<StandInState>,
}

impl StandIn {
    pub async fn start(cluster: &TestCluster, name: &str) -> StandIn {
        let state = Arc::new(StandInState {
            name: name.to_owned(),
            healthz: Mutex::new((
                StatusCode::OK,
                json!({"status": "ok", "role": "replica", "name": name}),
            )),
            content: Mutex::new(Content::Serve(Bytes::from_static(b"stand-in bytes"))),
            admin_status: Mutex::new(StatusCode::OK),
            seen: Mutex::default(),
        });
        let router = Router::new()
            .route("/healthz", get(stand_in_healthz))
            .route("/admin/purge", post(stand_in_admin))
            .route("/admin/prefetch", post(stand_in_admin))
            .fallback(stand_in_content)
            .with_state(state.clone());
        let server = Server::bind(
            "stand-in",
            &cluster.serving.at(SocketAddr::from(([127, 0, 0, 1], 0))),
            cluster.serving.tls.clone(),
            router,
        )
        .await
        .expect("stand-in binds");
        let addr = server.local_addr();
        StandIn {
            running: Running::spawn(addr, |token| server.run(token)),
            state,
        }
    }

    pub fn url(&self) -> String {
        self.running.url()
    }

    /// What `/healthz` answers from now on.
    pub fn set_healthz(&self, status: StatusCode, body: Value) {
        *self.state.healthz.lock().unwrap() = (status, body);
    }

    /// Merges `fields` into an ok `/healthz` answer.
    pub fn report(&self, fields: Value) {
        let mut body = json!({"status": "ok", "role": "replica", "name": self.state.name});
        if let (Some(body), Some(fields)) = (body.as_object_mut(), fields.as_object()) {
            for (k, v) in fields {
                body.insert(k.clone(), v.clone());
            }
        }
        self.set_healthz(StatusCode::OK, body);
    }

    pub fn set_content(&self, content: Content) {
        *self.state.content.lock().unwrap() = content;
    }

    pub fn set_admin_status(&self, status: StatusCode) {
        *self.state.admin_status.lock().unwrap() = status;
    }

    /// Requests received, `/healthz` excluded.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

async fn stand_in_healthz(State(state): State<Arc<StandInState>>) -> Response {
    let (status, body) = state.healthz.lock().unwrap().clone();
    (status, axum::Json(body)).into_response()
}

fn record(state: &StandInState, method: &str, path: &str, headers: &HeaderMap, body: Bytes) {
    state.seen.lock().unwrap().push(Seen {
        method: method.to_owned(),
        path: path.to_owned(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    });
}

async fn stand_in_admin(State(state): State<Arc<StandInState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    record(&state, "POST", parts.uri.path(), &parts.headers, body);
    let status = *state.admin_status.lock().unwrap();
    let answer = if parts.uri.path() == "/admin/prefetch" {
        json!({"job": format!("{}-job-1", state.name)})
    } else {
        json!({"purged": 1})
    };
    (status, axum::Json(answer)).into_response()
}

async fn stand_in_content(State(state): State<Arc<StandInState>>, request: Request) -> Response {
    record(
        &state,
        request.method().as_str(),
        request.uri().path(),
        request.headers(),
        Bytes::new(),
    );
    let content = state.content.lock().unwrap().clone();
    match content {
        Content::Serve(bytes) => (
            [
                ("x-served-by", state.name.clone()),
                ("content-type", "video/mp4".to_owned()),
            ],
            bytes,
        )
            .into_response(),
        Content::BrokenBody => {
            let failing = futures_util::stream::once(async {
                Err::<Bytes, _>(std::io::Error::other("stand-in body fails"))
            });
            Response::new(Body::from_stream(failing))
        }
        Content::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response(),
        Content::DiesMidBody {
            body,
            etag,
            after,
            die,
        } => {
            let len = body.len();
            let sent = futures_util::stream::once(async move { Ok(body.slice(..after)) });
            let dies = futures_util::stream::once(async move {
                die.notified().await;
                Err::<Bytes, _>(std::io::Error::other("stand-in dies mid-body"))
            });
            let mut response = Response::new(Body::from_stream(futures_util::StreamExt::chain(
                sent, dies,
            )));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, len.into());
            headers.insert("x-served-by", state.name.parse().unwrap());
            if let Some(etag) = etag {
                headers.insert(header::ETAG, etag.parse().unwrap());
            }
            response
        }
    }
}

/// `GET <controller>/api/cluster`.
pub async fn cluster_view(client: &reqwest::Client, controller: &str) -> Value {
    let response = client
        .get(format!("{controller}/api/cluster"))
        .send()
        .await
        .expect("cluster API answers");
    assert_eq!(response.status(), StatusCode::OK);
    serde_json::from_slice(&response.bytes().await.expect("cluster body")).expect("cluster JSON")
}

/// The replica entry for `url` in a cluster view.
pub fn replica<'a>(cluster: &'a Value, url: &str) -> Option<&'a Value> {
    cluster["replicas"]
        .as_array()?
        .iter()
        .find(|r| r["url"] == url)
}

/// Polls `/api/cluster` until `done` holds; returns that view and how long
/// it took. Panics after [`WAIT_GUARD`].
pub async fn wait_for(
    client: &reqwest::Client,
    controller: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let view = cluster_view(client, controller).await;
        if done(&view) {
            return (view, started.elapsed());
        }
        assert!(
            started.elapsed() < WAIT_GUARD,
            "timed out waiting for {what}; cluster: {view:#}"
        );
        // A polling interval, not a readiness guess: the loop re-checks.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until exactly `urls` are in rotation.
pub async fn wait_healthy(
    client: &reqwest::Client,
    controller: &str,
    urls: &[String],
) -> (Value, Duration) {
    wait_for(client, controller, &format!("{urls:?} in rotation"), |v| {
        let healthy: Vec<&str> = v["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["healthy"] == true)
            .filter_map(|r| r["url"].as_str())
            .collect();
        healthy.len() == urls.len() && urls.iter().all(|u| healthy.contains(&u.as_str()))
    })
    .await
}

/// `GET <controller>/api/route/<path>` as JSON.
pub async fn route(client: &reqwest::Client, controller: &str, path: &str) -> Value {
    let response = client
        .get(format!("{controller}/api/route{path}"))
        .send()
        .await
        .expect("route API answers");
    assert_eq!(response.status(), StatusCode::OK, "route {path}");
    serde_json::from_slice(&response.bytes().await.expect("route body")).expect("route JSON")
}

/// The base URL a routed URL points at (`https://host:port`).
pub fn base_of(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    url[..end].to_owned()
}

/// Counts routed URLs per base URL.
pub fn spread(urls: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for url in urls {
        *counts.entry(base_of(&url)).or_insert(0) += 1;
    }
    counts
}

/// The `Location` of a redirect from the controller.
pub async fn location(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.expect("controller answers");
    assert_eq!(response.status(), StatusCode::FOUND, "{url}");
    response
        .headers()
        .get(header::LOCATION)
        .expect("Location")
        .to_str()
        .expect("ASCII Location")
        .to_owned()
}

/// A client that trusts the cluster's CA, does not follow redirects, and
/// gives up on a request after a minute, so a hung controller fails the
/// test instead of stalling it.
pub fn client(cluster: &TestCluster) -> reqwest::Client {
    let pem = std::fs::read(&cluster.pki.ca_cert).expect("CA file");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("CA pem")])
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(WAIT_GUARD * 2)
        .build()
        .expect("client")
}

/// A response body as JSON (`reqwest`'s `json` feature is off in the
/// workspace).
pub async fn json(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON body")
}
