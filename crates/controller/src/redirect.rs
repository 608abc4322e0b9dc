//! Viewer requests: every GET or HEAD outside the controller's own paths
//! is routed. In redirect mode the answer is a 302 to the chosen replica's
//! URL for the same path and query; the browser then fetches every range
//! of that playback from the replica, so the controller is asked once per
//! load and never carries video. In proxy mode the request goes to
//! [`crate::proxy`].
//!
//! The redirect itself carries CORS headers (added by the shared layer, as
//! on every response), because `fetch()`-based players and `<video
//! crossorigin>` check them on each hop; preflights are answered by that
//! layer directly and never redirected. It is `no-store`: a cached
//! redirect would pin a viewer to a replica that may since have died.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};

use crate::registry::Member;
use crate::{Error, Mode, Shared};

/// Where a viewer is sent.
#[derive(Debug, Clone)]
pub enum Target {
    Replica(Arc<Member>),
    /// No replica is healthy: the origin serves.
    Origin,
}

impl Target {
    /// The base URL the request's path is appended to.
    pub(crate) fn base_url<'a>(&'a self, shared: &'a Shared) -> &'a str {
        match self {
            Target::Replica(member) => &member.url,
            Target::Origin => &shared.origin,
        }
    }

    /// The name shown in APIs.
    pub fn name(&self) -> String {
        match self {
            Target::Replica(member) => member.name(),
            Target::Origin => crate::metrics::ORIGIN.to_owned(),
        }
    }

    /// The `replica` label in metrics.
    pub fn label(&self) -> &str {
        match self {
            Target::Replica(member) => &member.url,
            Target::Origin => crate::metrics::ORIGIN,
        }
    }
}

impl Shared {
    /// Chooses where a new viewer of `path` goes.
    pub(crate) fn pick(&self, path: &str) -> Result<Target, Error> {
        let plan = self.router.plan(&self.registry.members(), path);
        match plan.into_iter().next() {
            Some(member) => Ok(Target::Replica(member)),
            None if self.config.fallback_to_origin => Ok(Target::Origin),
            None => {
                self.metrics.unavailable();
                Err(Error::NoReplica)
            }
        }
    }

    /// Counts a viewer sent to `target`.
    pub(crate) fn routed(&self, target: &Target) {
        if let Target::Replica(member) = target {
            member.routed();
        }
        self.metrics.route(
            target.label(),
            self.router.strategy().as_str(),
            self.config.mode.as_str(),
        );
    }
}

/// The fallback handler: routes every path the controller does not own.
pub(crate) async fn handler(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        let status = if method == Method::OPTIONS {
            // The CORS layer answers preflights; a bare OPTIONS is
            // answered here, never redirected.
            StatusCode::NO_CONTENT
        } else {
            StatusCode::METHOD_NOT_ALLOWED
        };
        return (status, [(header::ALLOW, "GET, HEAD, OPTIONS")]).into_response();
    }
    match shared.config.mode {
        Mode::Redirect => redirect(&shared, request.uri()),
        Mode::Proxy => crate::proxy::forward(&shared, request).await,
    }
}

fn redirect(shared: &Shared, uri: &http::Uri) -> Response {
    let target = match shared.pick(uri.path()) {
        Ok(target) => target,
        Err(e) => return e.into_response(),
    };
    let location = target_url(shared, &target, uri);
    let Ok(location) = HeaderValue::from_str(&location) else {
        // The path came in as a valid request target and the base URL was
        // validated, so this cannot happen; answer rather than panic.
        return Error::BadRequest("unroutable path".into()).into_response();
    };
    shared.routed(&target);
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response()
}

/// The target's URL for the request's path and query (kept as received,
/// percent-encoding included).
pub(crate) fn target_url(shared: &Shared, target: &Target, uri: &http::Uri) -> String {
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{}{}", target.base_url(shared), path_and_query)
}
