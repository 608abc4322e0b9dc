//! The admin API under `/admin/`: purge, prefetch, list.
//!
//! Every call needs `Authorization: Bearer <admin_token>`, compared in
//! constant time. Without a configured token the API is off: every
//! `/admin/` path answers 404 (and is never forwarded to the origin).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::Shared;
use crate::object::{Chunk, FillEnd};
use crate::request::Directives;
use crate::store::{Lookup, Store};

/// Most paths in one prefetch request.
const MAX_PREFETCH_PATHS: usize = 10_000;

/// Rejects calls without the right bearer token.
pub(crate) async fn authorize(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = shared.admin_token.as_deref() else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    if !vcdn_http::auth::bearer_matches(request.headers(), token) {
        tracing::warn!(
            path = request.uri().path(),
            "admin call with a missing or wrong token"
        );
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "unauthorized\n",
        )
            .into_response();
    }
    next.run(request).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PurgeRequest {
    path: Option<String>,
    prefix: Option<String>,
}

pub(crate) async fn purge(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<PurgeRequest>,
) -> Response {
    let valid = |p: &Option<String>| p.as_deref().is_none_or(|p| p.starts_with('/'));
    if request.path.is_none() == request.prefix.is_none()
        || !valid(&request.path)
        || !valid(&request.prefix)
    {
        return (
            StatusCode::BAD_REQUEST,
            "give exactly one of \"path\" or \"prefix\", starting with /\n",
        )
            .into_response();
    }
    let purged = shared
        .store
        .purge(request.path.as_deref(), request.prefix.as_deref());
    tracing::info!(path = ?request.path, prefix = ?request.prefix, purged, "purged");
    Json(serde_json::json!({ "purged": purged })).into_response()
}

pub(crate) async fn list(State(shared): State<Arc<Shared>>) -> Response {
    Json(serde_json::json!({ "objects": shared.store.list() })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrefetchRequest {
    paths: Vec<String>,
}

/// Progress of one prefetch job.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Job {
    pub id: u64,
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    pub bytes: u64,
    pub finished: bool,
    pub failures: Vec<String>,
}

/// Prefetch jobs, kept for the process's life (they are small).
pub struct Jobs {
    next: AtomicU64,
    jobs: Mutex<HashMap<u64, Job>>,
    /// Bumped on every change, for callers waiting for a job to finish.
    changed: watch::Sender<u64>,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            next: AtomicU64::new(0),
            jobs: Mutex::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl Jobs {
    fn update(&self, id: u64, f: impl FnOnce(&mut Job)) {
        if let Some(job) = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&id)
        {
            f(job);
        }
        self.changed.send_modify(|n| *n += 1);
    }

    fn get(&self, id: u64) -> Option<Job> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }
}

pub(crate) async fn prefetch(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<PrefetchRequest>,
) -> Response {
    if request.paths.is_empty()
        || request.paths.len() > MAX_PREFETCH_PATHS
        || request.paths.iter().any(|p| !p.starts_with('/'))
    {
        return (
            StatusCode::BAD_REQUEST,
            "\"paths\" must list 1 to 10000 paths starting with /\n",
        )
            .into_response();
    }
    let id = shared.jobs.next.fetch_add(1, Ordering::Relaxed) + 1;
    shared
        .jobs
        .jobs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            id,
            Job {
                id,
                total: request.paths.len(),
                ..Job::default()
            },
        );
    let store = shared.store.clone();
    let jobs = shared.clone();
    tokio::spawn(async move {
        for path in request.paths {
            match warm(&store, &path).await {
                Ok(bytes) => jobs.jobs.update(id, |j| {
                    j.done += 1;
                    j.bytes += bytes;
                }),
                Err(why) => {
                    tracing::warn!(path, why, "prefetch failed");
                    jobs.jobs.update(id, |j| {
                        j.failed += 1;
                        j.failures.push(format!("{path}: {why}"));
                    });
                }
            }
        }
        jobs.jobs.update(id, |j| j.finished = true);
    });
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": id, "progress": format!("/admin/prefetch/{id}") })),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct ProgressQuery {
    /// Wait (up to a minute) until the job has finished.
    #[serde(default)]
    wait: bool,
}

pub(crate) async fn prefetch_progress(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<u64>,
    Query(query): Query<ProgressQuery>,
) -> Response {
    if query.wait {
        let mut changed = shared.jobs.changed.subscribe();
        let finished = async {
            loop {
                if shared.jobs.get(id).is_none_or(|j| j.finished) {
                    return;
                }
                if changed.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(60), finished).await;
    }
    match shared.jobs.get(id) {
        Some(job) => Json(job).into_response(),
        None => (StatusCode::NOT_FOUND, "no such prefetch job\n").into_response(),
    }
}

/// Fetches every chunk of one path into the cache; returns its size.
async fn warm(store: &Arc<Store>, path: &str) -> Result<u64, String> {
    let object = match store
        .lookup(path, 0, &Directives::default(), &http::HeaderMap::new())
        .await
    {
        Lookup::Object(object, _) => object,
        Lookup::Pass => return Err("not cacheable".into()),
        Lookup::OriginFailed | Lookup::NotCached => return Err("origin unavailable".into()),
    };
    if object.meta.status != StatusCode::OK {
        // A stored 404 (or redirect) is cached, but nothing was warmed.
        return Err(format!("the origin answered {}", object.meta.status));
    }
    let count = object.chunk_count();
    if count == 0 {
        return Ok(0);
    }
    store.fill(&object, 0, count - 1);
    for index in 0..count {
        if let Chunk::Filling(fill) = object.state(index) {
            let mut progress = fill.progress.subscribe();
            let _ = progress.wait_for(|p| p.end != FillEnd::Running).await;
        }
        if !object.is_ready(index) {
            return Err("a chunk could not be fetched".into());
        }
    }
    Ok(object.meta.total)
}
