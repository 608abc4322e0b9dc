//! A test origin: a real HTTPS server whose behaviour a test controls.
//!
//! It serves files from memory (or "virtual" files whose bytes are computed
//! from their position, so a 1 GiB file costs no memory), honours single
//! ranges and `If-Range` (or ignores ranges, like some origins), and can be
//! slowed (first-byte delay, rate limit), held (send N bytes of every
//! response, then wait until released), and cut (abort every response after
//! N bytes). It records every request and counts the body bytes it sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use vcdn_http::conditional::{self, ETag, Validators};
use vcdn_http::range::{self, RangeRequest};
use vcdn_http::{CancellationToken, Serving};

/// Piece size of response bodies.
const PIECE: usize = 16 * 1024;

/// What a test origin file holds.
#[derive(Clone)]
pub enum Content {
    Bytes(Bytes),
    /// `len` bytes, byte `i` given by [`virtual_bytes`] with this seed.
    Virtual {
        len: u64,
        seed: u64,
    },
}

impl Content {
    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::Virtual { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `start..start + len`.
    pub fn slice(&self, start: u64, len: usize) -> Bytes {
        match self {
            Content::Bytes(b) => b.slice(start as usize..start as usize + len),
            Content::Virtual { seed, .. } => Bytes::from(virtual_bytes(*seed, start, len)),
        }
    }

    /// Hex sha256 of the whole content.
    pub fn sha256(&self) -> String {
        let mut hasher = Sha256::new();
        let mut at = 0;
        while at < self.len() {
            let n = (self.len() - at).min(1 << 20) as usize;
            hasher.update(self.slice(at, n));
            at += n as u64;
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Bytes `start..start + len` of the virtual file with `seed`: every 8-byte
/// word is a hash of its index, so any position differs from its neighbours.
pub fn virtual_bytes(seed: u64, start: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut position = start;
    while out.len() < len {
        let word =
            splitmix(seed ^ (position / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes();
        let within = (position % 8) as usize;
        let take = (8 - within).min(len - out.len());
        out.extend_from_slice(&word[within..within + take]);
        position += take as u64;
    }
    out
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One request the origin received.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: Method,
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub if_none_match: Option<String>,
    pub status: StatusCode,
}

struct File {
    content: Content,
    etag: String,
    /// Caching headers of this path, replacing the origin-wide ones.
    headers: Option<Vec<(String, String)>>,
    /// The status every response for the path has; its body is the
    /// content, sent whole, without validators.
    status: StatusCode,
}

#[derive(Default)]
struct Behaviour {
    first_byte_delay: Duration,
    bytes_per_second: u64,
    hold_after: Option<u64>,
    cut_after: Option<u64>,
    cache_control: Option<String>,
    extra_headers: Vec<(String, String)>,
    fail_with: Option<StatusCode>,
}

struct OriginState {
    files: Mutex<HashMap<String, File>>,
    versions: AtomicU64,
    ranges: AtomicBool,
    behaviour: Mutex<Behaviour>,
    /// False while held responses must wait.
    released: watch::Sender<bool>,
    /// Responses currently waiting at the hold point.
    held: watch::Sender<usize>,
    log: Mutex<Vec<Logged>>,
    requests: watch::Sender<usize>,
    body_bytes: AtomicU64,
    /// When the rate-limited link is next free.
    link_free_at: Mutex<tokio::time::Instant>,
}

/// A running test origin.
pub struct TestOrigin {
    pub addr: SocketAddr,
    state: Arc<OriginState>,
    shutdown: CancellationToken,
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestOrigin {
    /// Starts a test origin on `127.0.0.1:0` with the cluster's certificate.
    pub async fn start(serving: &Serving) -> TestOrigin {
        let state = Arc::new(OriginState {
            files: Mutex::default(),
            versions: AtomicU64::new(0),
            ranges: AtomicBool::new(true),
            behaviour: Mutex::default(),
            released: watch::channel(true).0,
            held: watch::channel(0).0,
            log: Mutex::default(),
            requests: watch::channel(0).0,
            body_bytes: AtomicU64::new(0),
            link_free_at: Mutex::new(tokio::time::Instant::now()),
        });
        let router = Router::new().fallback(handle).with_state(state.clone());
        let config = serving.at(SocketAddr::from(([127, 0, 0, 1], 0)));
        let server = vcdn_http::Server::bind("test-origin", &config, serving.tls.clone(), router)
            .await
            .expect("test origin binds");
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(async move { server.run(token).await });
        TestOrigin {
            addr,
            state,
            shutdown,
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// Publishes (or replaces, with a new ETag) a file.
    pub fn put(&self, path: &str, content: Content) {
        let version = self.state.versions.fetch_add(1, Ordering::SeqCst) + 1;
        self.state.files.lock().unwrap().insert(
            path.to_owned(),
            File {
                content,
                etag: format!("\"v{version}\""),
                headers: None,
                status: StatusCode::OK,
            },
        );
    }

    /// Publishes a file whose responses carry exactly these caching headers
    /// (besides ETag and the message headers) instead of the origin-wide
    /// `Cache-Control`.
    pub fn put_with(&self, path: &str, content: Content, headers: &[(&str, &str)]) {
        self.put(path, content);
        if let Some(file) = self.state.files.lock().unwrap().get_mut(path) {
            file.headers = Some(
                headers
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect(),
            );
        }
    }

    /// Makes every response for `path` a `status` (a 404, a 301...) whose
    /// body is `content`, with these headers and no validators. Ranges and
    /// preconditions are ignored, as for any response that is not a 200.
    pub fn put_status(
        &self,
        path: &str,
        status: StatusCode,
        content: Content,
        headers: &[(&str, &str)],
    ) {
        self.put_with(path, content, headers);
        if let Some(file) = self.state.files.lock().unwrap().get_mut(path) {
            file.status = status;
        }
    }

    /// Publishes the `language` variant of a path: requests with that
    /// `Accept-Language` get it, and every response for the path says
    /// `Vary: Accept-Language`.
    pub fn put_variant(&self, path: &str, language: &str, content: Content) {
        self.put(&format!("{path}@{language}"), content);
    }

    /// Whether `Range` is honoured (true) or ignored with a 200 (false).
    pub fn set_ranges(&self, on: bool) {
        self.state.ranges.store(on, Ordering::SeqCst);
    }

    pub fn set_first_byte_delay(&self, delay: Duration) {
        self.state.behaviour.lock().unwrap().first_byte_delay = delay;
    }

    /// Limits the origin's link to about this many bytes per second, shared
    /// by all responses like a real uplink (0: no limit).
    pub fn set_rate(&self, bytes_per_second: u64) {
        self.state.behaviour.lock().unwrap().bytes_per_second = bytes_per_second;
    }

    /// Every response sends `bytes` of its body, then waits for [`release`](Self::release).
    pub fn hold_after(&self, bytes: u64) {
        self.state.behaviour.lock().unwrap().hold_after = Some(bytes);
        self.state.released.send_replace(false);
    }

    /// Lets held responses go on, and stops holding new ones.
    pub fn release(&self) {
        self.state.behaviour.lock().unwrap().hold_after = None;
        self.state.released.send_replace(true);
    }

    /// The `Cache-Control` of every response (default `public, max-age=3600`).
    /// Adds a header to every response (e.g. `CDN-Cache-Control`).
    pub fn set_header(&self, name: &str, value: &str) {
        self.state
            .behaviour
            .lock()
            .unwrap()
            .extra_headers
            .push((name.to_owned(), value.to_owned()));
    }

    /// Answers every request with this status and no body (`None`: serve).
    pub fn fail_with(&self, status: Option<StatusCode>) {
        self.state.behaviour.lock().unwrap().fail_with = status;
    }

    /// Stops the origin: new connections are refused.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    pub fn set_cache_control(&self, value: &str) {
        self.state.behaviour.lock().unwrap().cache_control = Some(value.to_owned());
    }

    /// Every response is aborted after `bytes` of its body (`None`: never).
    pub fn cut_after(&self, bytes: Option<u64>) {
        self.state.behaviour.lock().unwrap().cut_after = bytes;
    }

    /// Waits until `n` responses are waiting at the hold point.
    pub async fn wait_held(&self, n: usize) {
        let mut held = self.state.held.subscribe();
        let _ = held.wait_for(|&h| h >= n).await;
    }

    /// Waits until the origin has received `n` requests in all.
    pub async fn wait_requests(&self, n: usize) {
        let mut requests = self.state.requests.subscribe();
        let _ = requests.wait_for(|&r| r >= n).await;
    }

    /// Waits until the origin has received `n` requests for one path.
    pub async fn wait_requests_for(&self, path: &str, n: usize) {
        let mut requests = self.state.requests.subscribe();
        loop {
            if self.requests_for(path).len() >= n {
                return;
            }
            if requests.changed().await.is_err() {
                return;
            }
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    /// Requests so far for one path.
    pub fn requests_for(&self, path: &str) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Body bytes sent so far, over all responses.
    pub fn body_bytes(&self) -> u64 {
        self.state.body_bytes.load(Ordering::SeqCst)
    }
}

async fn handle(State(state): State<Arc<OriginState>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let language = header_text(&headers, header::ACCEPT_LANGUAGE).unwrap_or_default();
    let (file, varies) = {
        let files = state.files.lock().unwrap();
        let varies = files.keys().any(|k| k.starts_with(&format!("{path}@")));
        let chosen = if varies {
            files.get(&format!("{path}@{language}"))
        } else {
            files.get(&path)
        };
        (
            chosen.map(|f| {
                (
                    f.content.clone(),
                    f.etag.clone(),
                    f.headers.clone(),
                    f.status,
                )
            }),
            varies,
        )
    };
    let respond = |status: StatusCode| {
        state.log.lock().unwrap().push(Logged {
            method: request.method().clone(),
            path: path.clone(),
            range: header_text(&headers, header::RANGE),
            if_range: header_text(&headers, header::IF_RANGE),
            if_none_match: header_text(&headers, header::IF_NONE_MATCH),
            status,
        });
        state.requests.send_modify(|n| *n += 1);
    };
    let (mut extra_headers, fail_with) = {
        let b = state.behaviour.lock().unwrap();
        (b.extra_headers.clone(), b.fail_with)
    };
    if varies {
        extra_headers.push(("vary".into(), "Accept-Language".into()));
    }
    if let Some(status) = fail_with {
        respond(status);
        return status.into_response();
    }
    let Some((content, etag, path_headers, status)) = file else {
        respond(StatusCode::NOT_FOUND);
        return StatusCode::NOT_FOUND.into_response();
    };
    let len = content.len();
    if status != StatusCode::OK {
        respond(status);
        let mut response = Response::builder().status(status);
        for (name, value) in extra_headers.iter().chain(path_headers.iter().flatten()) {
            response = response.header(name.as_str(), value.as_str());
        }
        if status != StatusCode::NO_CONTENT {
            response = response.header(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        let body = if request.method() == Method::HEAD || status == StatusCode::NO_CONTENT {
            Body::empty()
        } else {
            body(state.clone(), content, 0, len)
        };
        return response.body(body).unwrap_or_default();
    }
    let validators = Validators {
        etag: ETag::parse(&etag),
        last_modified: None,
    };
    let cache_control = match &path_headers {
        Some(own) => {
            extra_headers.extend(own.iter().cloned());
            None
        }
        None => Some(
            state
                .behaviour
                .lock()
                .unwrap()
                .cache_control
                .clone()
                .unwrap_or_else(|| "public, max-age=3600".into()),
        ),
    };
    if conditional::evaluate(request.method(), &headers, &validators)
        == conditional::Precondition::NotModified
    {
        respond(StatusCode::NOT_MODIFIED);
        let mut response = Response::builder();
        for (name, value) in &extra_headers {
            response = response.header(name.as_str(), value.as_str());
        }
        if let Some(cache_control) = &cache_control {
            response = response.header(header::CACHE_CONTROL, cache_control.as_str());
        }
        return response
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, etag)
            .header(header::CONTENT_LENGTH, HeaderValue::from(len))
            .body(Body::empty())
            .unwrap_or_default();
    }
    let wanted = if state.ranges.load(Ordering::SeqCst)
        && conditional::if_range_allows_partial(&headers, &validators)
    {
        range::resolve(headers.get(header::RANGE), len)
    } else {
        RangeRequest::Full
    };
    let mut response = Response::builder();
    for (name, value) in &extra_headers {
        response = response.header(name.as_str(), value.as_str());
    }
    if let Some(cache_control) = &cache_control {
        response = response.header(header::CACHE_CONTROL, cache_control.as_str());
    }
    let mut response = response
        .header(header::ETAG, etag)
        .header(header::CONTENT_TYPE, "video/mp4");
    if state.ranges.load(Ordering::SeqCst) {
        response = response.header(header::ACCEPT_RANGES, "bytes");
    }
    let (status, start, count) = match wanted {
        RangeRequest::Full => (StatusCode::OK, 0, len),
        RangeRequest::Partial(r) => {
            response = response.header(header::CONTENT_RANGE, r.content_range(len));
            (StatusCode::PARTIAL_CONTENT, r.start, r.len())
        }
        RangeRequest::Unsatisfiable => {
            respond(StatusCode::RANGE_NOT_SATISFIABLE);
            return response
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, range::unsatisfied_content_range(len))
                .body(Body::empty())
                .unwrap_or_default();
        }
    };
    respond(status);
    let body = if request.method() == Method::HEAD {
        Body::empty()
    } else {
        body(state.clone(), content, start, count)
    };
    response
        .status(status)
        .header(header::CONTENT_LENGTH, HeaderValue::from(count))
        .body(body)
        .unwrap_or_default()
}

fn header_text(headers: &http::HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The body of one response, with the origin's current behaviour applied.
fn body(state: Arc<OriginState>, content: Content, start: u64, count: u64) -> Body {
    let (first_byte_delay, bytes_per_second, hold_after, cut_after) = {
        let b = state.behaviour.lock().unwrap();
        (
            b.first_byte_delay,
            b.bytes_per_second,
            b.hold_after,
            b.cut_after,
        )
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(1);
    tokio::spawn(async move {
        if !first_byte_delay.is_zero() {
            tokio::time::sleep(first_byte_delay).await;
        }
        let mut sent = 0u64;
        let mut held = false;
        while sent < count {
            if let Some(hold) = hold_after
                && sent >= hold
                && !held
            {
                held = true;
                state.held.send_modify(|h| *h += 1);
                let mut released = state.released.subscribe();
                let _ = released.wait_for(|&r| r).await;
                state.held.send_modify(|h| *h -= 1);
            }
            if let Some(cut) = cut_after
                && sent >= cut
            {
                let _ = sender
                    .send(Err(std::io::Error::other("test origin cut the response")))
                    .await;
                return;
            }
            let mut n = (count - sent).min(PIECE as u64);
            if let Some(hold) = hold_after.filter(|&h| h > sent && !held) {
                n = n.min(hold - sent);
            }
            if let Some(cut) = cut_after.filter(|&c| c > sent) {
                n = n.min(cut - sent);
            }
            let piece = content.slice(start + sent, n as usize);
            if sender.send(Ok(piece)).await.is_err() {
                return;
            }
            sent += n;
            state.body_bytes.fetch_add(n, Ordering::SeqCst);
            if bytes_per_second > 0 {
                let cost = Duration::from_secs_f64(n as f64 / bytes_per_second as f64);
                let at = {
                    let mut link = state.link_free_at.lock().unwrap();
                    let at = (*link).max(tokio::time::Instant::now());
                    *link = at + cost;
                    at + cost
                };
                tokio::time::sleep_until(at).await;
            }
        }
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    Body::from_stream(stream)
}
