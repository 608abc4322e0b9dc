//! `GET /api/videos`: the origin's catalog, passed through and reused for
//! `catalog_ttl_ms`, so a page full of viewers costs the origin one folder
//! walk per interval. Concurrent refreshes are coalesced into one request,
//! and when the origin fails a stale copy is served rather than nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, header};

use crate::Error;

/// Largest catalog accepted from the origin (its walk is bounded too).
const MAX_CATALOG_BYTES: usize = 32 * 1024 * 1024;
/// Time limit of one catalog fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

struct Cached {
    at: Instant,
    body: Bytes,
}

pub struct Catalog {
    client: reqwest::Client,
    url: String,
    ttl: Duration,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

impl Catalog {
    pub fn new(client: reqwest::Client, origin: &str, ttl: Duration) -> Catalog {
        Catalog {
            client,
            url: format!("{origin}/api/videos"),
            ttl,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The catalog's JSON, fresh within the TTL, or stale when the origin
    /// fails.
    pub async fn get(&self) -> Result<Bytes, Error> {
        // Held across the fetch on purpose: concurrent callers wait for the
        // one refresh instead of each asking the origin.
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && c.at.elapsed() < self.ttl
        {
            return Ok(c.body.clone());
        }
        match self.fetch().await {
            Ok(body) => {
                *cached = Some(Cached {
                    at: Instant::now(),
                    body: body.clone(),
                });
                Ok(body)
            }
            Err(e) => match cached.as_ref() {
                Some(stale) => {
                    tracing::warn!(error = %e, "catalog refresh failed; serving the last copy");
                    Ok(stale.body.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn fetch(&self) -> Result<Bytes, Error> {
        let upstream = |reason: String| Error::Upstream {
            url: self.url.clone(),
            reason,
        };
        let attempt = async {
            let mut response = self
                .client
                .get(&self.url)
                .send()
                .await
                .map_err(|e| upstream(crate::health::describe(&e)))?;
            if !response.status().is_success() {
                return Err(upstream(format!("HTTP {}", response.status())));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| upstream(crate::health::describe(&e)))?
            {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_CATALOG_BYTES {
                    return Err(upstream("catalog too large".into()));
                }
            }
            // Passed through as it is, but only if it is JSON: the page
            // parses it, and an HTML error page must not reach it.
            serde_json::from_slice::<serde::de::IgnoredAny>(&body)
                .map_err(|_| upstream("catalog is not JSON".into()))?;
            Ok(Bytes::from(body))
        };
        tokio::time::timeout(FETCH_TIMEOUT, attempt)
            .await
            .map_err(|_| upstream("timed out".into()))?
    }
}

pub(crate) async fn handler(State(shared): State<Arc<crate::Shared>>) -> Response {
    match shared.catalog.get().await {
        Ok(body) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            body,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}
