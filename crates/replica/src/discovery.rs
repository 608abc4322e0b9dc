//! Discovering an object: the first request for an unknown (or stale) URL.
//!
//! One origin request for the chunk the first viewer needs tells the
//! object's length, validators and whether the origin honours ranges.
//! Viewers asking for the same URL meanwhile wait for those headers, not for
//! the chunk, then follow the chunk as it is written. For a stale object the
//! request is conditional, and a 304 keeps every stored chunk.

use std::sync::Arc;

use http::{StatusCode, header};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::freshness::{self, Freshness, Heuristic};
use crate::object::{Meta, Object};
use crate::origin_client;
use crate::store::{Found, Lookup, Slot, Store};
use crate::variant;

/// How long an uncacheable answer sends the URL's requests straight to
/// the origin before it is asked again whether it may be cached.
const PASS_MEMORY: std::time::Duration = std::time::Duration::from_secs(30);

impl Store {
    /// Asks the origin for the chunk holding byte `hint` and learns the
    /// object from the answer. With a `stale` object the request is
    /// conditional: a 304 makes the stored version fresh again.
    pub(crate) async fn discover(
        self: Arc<Self>,
        key: String,
        hint: u64,
        stale: Option<Arc<Object>>,
        negotiated: variant::Values,
        sender: watch::Sender<Option<Lookup>>,
    ) {
        let chunk = hint / self.chunk_bytes;
        let first = chunk * self.chunk_bytes;
        let last = first + self.chunk_bytes - 1;
        let conditional = stale.as_ref().map(|o| o.meta.clone());
        let requested = Instant::now();
        self.stats.origin_requests.inc();
        let response = match self
            .origin
            .fetch_conditional(&key, (first, last), conditional.as_ref(), &negotiated)
            .await
        {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(key, error = %e, "origin unreachable");
                // RFC 9111 §4.2.4: a cache that cannot reach the origin may
                // serve what it has, unless the origin forbade it.
                let found = match &stale {
                    Some(object) if !freshness::forbids_stale(&object.header_map()) => {
                        Lookup::Object(object.clone(), Found::Stale)
                    }
                    _ => Lookup::OriginFailed,
                };
                return self.finish_discovery(&key, &sender, found, stale.as_ref());
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        if let Some(previous) = stale {
            // RFC 5861 §4's errors; a heuristically cacheable 501 may
            // replace a stored 404 or 501, not stored content.
            // A stored success is never replaced by a server error.
            let error = matches!(status.as_u16(), 500 | 502 | 503 | 504)
                || (status.is_server_error()
                    && (previous.meta.status.is_success()
                        || !origin_client::storable(status, &headers)));
            if error {
                // RFC 5861 §4: within `stale-if-error` the stored response
                // answers instead of the origin's error. Either way the
                // stored version stays: an error says nothing about it.
                let (age, lifetime) = previous.age_and_lifetime();
                let window = freshness::stale_if_error(&previous.header_map());
                let found = match window {
                    Some(window)
                        if age < lifetime + window
                            && !freshness::forbids_stale(&previous.header_map()) =>
                    {
                        Lookup::Object(previous.clone(), Found::Stale)
                    }
                    _ => Lookup::Pass,
                };
                tracing::warn!(key, %status, "origin error while revalidating");
                return self.finish_discovery(&key, &sender, found, Some(&previous));
            }
            let same = previous.meta.same_version(
                headers.get(header::ETAG),
                headers.get(header::LAST_MODIFIED),
            );
            let same_length = origin_client::content_range(&headers).map(|r| r.total)
                == Some(previous.meta.total);
            if status == StatusCode::NOT_MODIFIED
                || (status == StatusCode::PARTIAL_CONTENT && same && same_length)
            {
                // Still the same version: fresh again, chunks kept. The
                // 304's own freshness fields win over the stored ones.
                if status == StatusCode::NOT_MODIFIED {
                    previous.update_headers(&headers);
                }
                let mut merged = previous.header_map();
                for name in headers.keys() {
                    merged.remove(name);
                }
                merged.extend(headers.clone());
                let heuristic =
                    Heuristic::for_response(previous.meta.status, &merged, self.default_ttl);
                self.refresh(&previous, Freshness::of(&merged, requested, heuristic));
                return self.finish_discovery(
                    &key,
                    &sender,
                    Lookup::Object(previous, Found::Revalidated),
                    None,
                );
            }
            tracing::info!(key, %status, "origin has a new version: dropping the cached one");
            self.invalidate(&previous);
        }
        if !origin_client::storable(status, &headers) {
            tracing::debug!(key, %status, "not cacheable: passing through");
            return self.finish_discovery(&key, &sender, Lookup::Pass, None);
        }
        // A response that varies is stored as the variant of the values
        // this request carried (see `variant`).
        let vary = match variant::of_response(&headers) {
            variant::Vary::On(names) => variant::select(&negotiated, &names),
            _ => Vec::new(),
        };
        self.record_vary(variant::primary(&key), &variant::names(&vary));
        let object_key = variant::key(variant::primary(&key), &vary);
        let etag = headers.get(header::ETAG).cloned();
        let last_modified = headers.get(header::LAST_MODIFIED).cloned();
        let has_validator = etag
            .as_ref()
            .is_some_and(|e| !e.as_bytes().starts_with(b"W/"))
            || last_modified.is_some();

        let (total, body_starts_at) = if status == StatusCode::PARTIAL_CONTENT {
            match origin_client::content_range(&headers) {
                Some(range) if range.first == first && range.last == last.min(range.total - 1) => {
                    (range.total, Some(chunk))
                }
                _ => {
                    tracing::warn!(key, "origin sent a Content-Range that was not asked for");
                    return self.finish_discovery(&key, &sender, Lookup::Pass, None);
                }
            }
        } else {
            // 200: the origin ignores ranges and sends the whole object.
            // Any other storable status (a 404, a 301...) is also stored
            // whole, and replayed whole.
            let no_body = (status == StatusCode::NO_CONTENT).then_some(0);
            match origin_client::content_length(&headers).or(no_body) {
                Some(total) => (total, Some(0)),
                None => return self.finish_discovery(&key, &sender, Lookup::Pass, None),
            }
        };
        let ranged = status == StatusCode::PARTIAL_CONTENT && has_validator;
        let stored_status = if status == StatusCode::PARTIAL_CONTENT {
            StatusCode::OK
        } else {
            status
        };
        let heuristic = Heuristic::for_response(stored_status, &headers, self.default_ttl);
        let freshness = Freshness::of(&headers, requested, heuristic);
        let reusable_stale = freshness::stale_while_revalidate(&headers).is_some()
            || freshness::stale_if_error(&headers).is_some();
        if freshness.lifetime.is_zero()
            && etag.is_none()
            && last_modified.is_none()
            && !reusable_stale
        {
            // Never fresh and nothing to revalidate with: storing it would
            // only be rewritten on every request. Hit-for-pass instead.
            tracing::debug!(key, %status, "stale on arrival and no validator: passing through");
            return self.finish_discovery(&key, &sender, Lookup::Pass, None);
        }
        let meta = Meta {
            status: stored_status,
            total,
            etag,
            last_modified,
            headers: origin_client::replayed_headers(&headers),
            ranged,
            vary,
        };
        let object = match self.create(&object_key, meta, freshness).await {
            Ok(object) => object,
            Err(e) => {
                tracing::error!(key, error = %e, "cannot create the object directory");
                return self.finish_discovery(&key, &sender, Lookup::Pass, None);
            }
        };

        // Claim what this response will carry before anyone can see the
        // object, so no second fill of the same chunk can start.
        let run = match (ranged, body_starts_at) {
            (true, Some(chunk)) => Some((chunk, vec![object.claim(chunk)])),
            (false, Some(0)) if status != StatusCode::PARTIAL_CONTENT => Some((
                0,
                (0..object.chunk_count()).map(|c| object.claim(c)).collect(),
            )),
            _ => None,
        };
        self.finish_discovery(
            &key,
            &sender,
            Lookup::Object(object.clone(), Found::Discovered),
            None,
        );
        match run {
            Some((first, claimed)) => {
                if let Err(e) = self
                    .write_run(&object, first, &claimed, response.bytes_stream())
                    .await
                {
                    tracing::warn!(key, error = %e, "fill failed");
                }
            }
            None => {
                // A 206 without validators: only one whole-object response
                // is sure to be one version.
                drop(response);
                self.fill(&object, 0, object.chunk_count().saturating_sub(1));
            }
        }
    }

    /// Publishes what a discovery found. `kept` is a stored version that
    /// stays in the index when the discovery found nothing better.
    fn finish_discovery(
        &self,
        key: &str,
        sender: &watch::Sender<Option<Lookup>>,
        found: Lookup,
        kept: Option<&Arc<Object>>,
    ) {
        {
            let mut index = self.index();
            match (&found, kept) {
                (Lookup::Object(object, _), _) => {
                    // A first response that varies is stored under its
                    // variant's key, not the URL's the lookup used.
                    if object.key != key {
                        index.remove(key);
                    }
                    index.insert(object.key.clone(), Slot::Known(object.clone()));
                }
                (_, Some(kept)) if !kept.is_invalid() => {
                    index.insert(key.to_owned(), Slot::Known(kept.clone()));
                }
                (Lookup::Pass, None) => {
                    // Hit-for-pass: for a while, requests for this URL go
                    // straight to the origin instead of asking twice.
                    let until = Instant::now() + PASS_MEMORY;
                    index.insert(key.to_owned(), Slot::Pass(until));
                }
                _ => {
                    index.remove(key);
                }
            }
        }
        sender.send_replace(Some(found));
    }
}
