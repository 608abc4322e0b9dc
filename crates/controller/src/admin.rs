//! The admin API, behind `Authorization: Bearer <controller.admin_token>`
//! (compared in constant time; the API answers 404 when no token is
//! configured, 401 to a missing or wrong token, before reading the body).
//!
//! - `POST /admin/replicas {"url":..., "name"?:...}`: join (201, or 200 if
//!   known); `DELETE /admin/replicas {"url":...}`: leave (200, or 404).
//! - `POST /admin/heartbeat {"url":..., "name"?:...}`: a replica announcing
//!   itself; an unknown one joins and is probed like the others, and is
//!   dropped when it stops announcing for `heartbeat_expiry_ms`.
//! - `POST /admin/purge {"path":"/x.mp4"}` or `{"prefix":"/show/"}`: sent to
//!   every replica; `POST /admin/prefetch {"paths":[...]}`: sent to every
//!   healthy replica. Both answer per replica
//!   (`{"ok":true,"replicas":[{"url","name","ok","status","response","error"}]}`),
//!   200 when all succeeded and 502 otherwise.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinSet;

use crate::health::{State as HealthState, describe};
use crate::registry::{Joined, Member, Source};
use crate::{Error, Shared};

/// Longest path accepted in purge and prefetch bodies.
const MAX_PATH_BYTES: usize = 4096;
/// Most paths in one prefetch.
const MAX_PREFETCH_PATHS: usize = 10_000;
/// Largest replica answer kept in a fan-out result.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Checks the bearer token. Runs before the body is looked at, so an
/// unauthenticated caller learns nothing from validation errors.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), Error> {
    let Some(token) = &shared.config.admin_token else {
        return Err(Error::AdminDisabled);
    };
    if vcdn_http::auth::bearer_matches(headers, token.expose()) {
        Ok(())
    } else {
        Err(Error::Unauthorized)
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Announce {
    url: String,
    #[serde(default)]
    name: Option<String>,
}

impl Announce {
    fn name(&self) -> Result<Option<String>, Error> {
        match &self.name {
            Some(name) if name.is_empty() || name.len() > 128 => {
                Err(Error::BadRequest("name must be 1 to 128 characters".into()))
            }
            other => Ok(other.clone()),
        }
    }
}

#[derive(Debug, Serialize)]
struct MemberView {
    url: String,
    name: String,
    source: Source,
    state: &'static str,
}

impl MemberView {
    fn of(member: &Member) -> MemberView {
        MemberView {
            url: member.url.clone(),
            name: member.name(),
            source: member.source(),
            state: member.with_health(|h| h.state_name()),
        }
    }
}

pub(crate) async fn join(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    authorize(&shared, &headers)?;
    let announce: Announce = parse(&body)?;
    let (member, joined) = shared.join(&announce.url, Source::Admin, announce.name()?)?;
    let status = match joined {
        Joined::New => StatusCode::CREATED,
        Joined::Known => StatusCode::OK,
    };
    Ok((status, Json(MemberView::of(&member))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Leave {
    url: String,
}

pub(crate) async fn leave(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    authorize(&shared, &headers)?;
    let leave: Leave = parse(&body)?;
    match shared.leave(&leave.url) {
        Some(member) => Ok(Json(serde_json::json!({ "removed": member.url })).into_response()),
        None => Err(Error::NotFound(format!("no replica {}", leave.url))),
    }
}

pub(crate) async fn heartbeat(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    authorize(&shared, &headers)?;
    let announce: Announce = parse(&body)?;
    let (member, joined) = shared.join(&announce.url, Source::Heartbeat, announce.name()?)?;
    Ok(Json(serde_json::json!({
        "status": "ok",
        "joined": joined == Joined::New,
        "url": member.url,
    }))
    .into_response())
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Purge {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
}

fn check_path(what: &str, path: &str) -> Result<(), Error> {
    if !path.starts_with('/') || path.len() > MAX_PATH_BYTES {
        return Err(Error::BadRequest(format!(
            "{what} must start with `/` and be at most {MAX_PATH_BYTES} bytes"
        )));
    }
    Ok(())
}

pub(crate) async fn purge(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    authorize(&shared, &headers)?;
    let purge: Purge = parse(&body)?;
    match (&purge.path, &purge.prefix) {
        (Some(path), None) => check_path("path", path)?,
        (None, Some(prefix)) => check_path("prefix", prefix)?,
        _ => {
            return Err(Error::BadRequest(
                "give exactly one of `path` and `prefix`".into(),
            ));
        }
    }
    // Every replica, down ones included: one that comes back must not
    // serve what was purged, so its failure is reported, not hidden.
    let targets = shared.registry.members();
    Ok(fan_out(&shared, targets, "/admin/purge", &purge).await)
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Prefetch {
    paths: Vec<String>,
}

pub(crate) async fn prefetch(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    authorize(&shared, &headers)?;
    let prefetch: Prefetch = parse(&body)?;
    if prefetch.paths.is_empty() || prefetch.paths.len() > MAX_PREFETCH_PATHS {
        return Err(Error::BadRequest(format!(
            "paths must list 1 to {MAX_PREFETCH_PATHS} paths"
        )));
    }
    for path in &prefetch.paths {
        check_path("each path", path)?;
    }
    // Only replicas that can take work: a down one would just fail.
    let targets: Vec<_> = shared
        .registry
        .members()
        .into_iter()
        .filter(|m| m.with_health(|h| h.state == HealthState::Healthy))
        .collect();
    if targets.is_empty() {
        return Err(Error::NoReplica);
    }
    Ok(fan_out(&shared, targets, "/admin/prefetch", &prefetch).await)
}

/// One replica's answer to a fanned-out admin call.
#[derive(Debug, Serialize)]
struct Answer {
    url: String,
    name: String,
    ok: bool,
    status: Option<u16>,
    /// The replica's JSON answer (a prefetch job id, say).
    response: Option<Value>,
    error: Option<String>,
}

/// Sends the same admin call to every target concurrently.
async fn fan_out(
    shared: &Shared,
    targets: Vec<Arc<Member>>,
    path: &'static str,
    body: &impl Serialize,
) -> Response {
    let body = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let timeout = Duration::from_millis(shared.config.admin_timeout_ms);
    let token = shared.config.replica_token().cloned();
    let mut calls = JoinSet::new();
    for member in targets {
        let client = shared.upstream.clone();
        let body = body.clone();
        let token = token.clone();
        calls.spawn(async move {
            let url = format!("{}{path}", member.url);
            let mut request = client
                .post(&url)
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
            if let Some(token) = &token {
                request = request.bearer_auth(token.expose());
            }
            let call = async {
                let mut response = request.send().await.map_err(|e| describe(&e))?;
                let status = response.status();
                let mut answer = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
                    if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                        break;
                    }
                    answer.extend_from_slice(&chunk);
                }
                Ok::<_, String>((status, serde_json::from_slice::<Value>(&answer).ok()))
            };
            let result = tokio::time::timeout(timeout, call)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())));
            let name = member.name();
            match result {
                Ok((status, response)) => Answer {
                    ok: status.is_success(),
                    error: (!status.is_success()).then(|| format!("HTTP {status}")),
                    status: Some(status.as_u16()),
                    response,
                    url: member.url.clone(),
                    name,
                },
                Err(error) => Answer {
                    ok: false,
                    status: None,
                    response: None,
                    error: Some(error),
                    url: member.url.clone(),
                    name,
                },
            }
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = calls.join_next().await {
        match joined {
            Ok(answer) => answers.push(answer),
            Err(e) => tracing::error!(error = %e, "admin fan-out task failed"),
        }
    }
    answers.sort_by(|a, b| a.url.cmp(&b.url));
    let ok = answers.iter().all(|a| a.ok);
    for failed in answers.iter().filter(|a| !a.ok) {
        tracing::warn!(replica = %failed.url, call = path, error = failed.error.as_deref().unwrap_or(""), "admin call to a replica failed");
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    (
        status,
        Json(serde_json::json!({ "ok": ok, "replicas": answers })),
    )
        .into_response()
}
