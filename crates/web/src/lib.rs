//! The web role: the page a viewer opens, and the operator's dashboard.
//!
//! It serves one page (plain HTML, CSS and ES modules embedded in the
//! binary, so running vcdn needs no front-end build) and a tiny
//! `/config.json` telling the page where the controller is. Everything else
//! happens in the browser: the page reads the catalog from the controller,
//! asks it for a route to each video and plays straight from the replica it
//! names, and polls `/api/cluster` for the dashboard. The web role never
//! calls another role; CORS (`*` on every role) lets the page do it.
//!
//! - [`page`]: the page shell for every client-side route (`/`,
//!   `/watch/<path>`, `/dashboard`) and `/config.json`.
//! - [`assets`]: the embedded files, served with strong validators.
//!
//! The browser side lives in `assets/`: `app.js` routes between the
//! catalog (`catalog.js`), the player (`player.js`, with failover) and the
//! dashboard (`dashboard.js`, with `sparkline.js` charts).

pub mod assets;
pub mod page;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde::Deserialize;
use vcdn_http::{CancellationToken, Server, Serving};

/// The controller's URL when none is configured: the default controller
/// port on this machine.
pub const DEFAULT_CONTROLLER: &str = "https://localhost:8084";

/// Longest page title accepted.
const MAX_TITLE_CHARS: usize = 100;

/// The `[web]` section of `vcdn.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The controller's base URL as browsers reach it (not as this server
    /// does: the page calls it directly). Unset: [`DEFAULT_CONTROLLER`], or
    /// under `vcdn up` the controller it starts.
    pub controller: Option<String>,
    /// Shown in the page's header and the browser's tab.
    pub title: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            controller: None,
            title: "vcdn".into(),
        }
    }
}

impl Config {
    /// The controller's base URL, without a trailing slash.
    pub fn controller_url(&self) -> &str {
        self.controller
            .as_deref()
            .unwrap_or(DEFAULT_CONTROLLER)
            .trim_end_matches('/')
    }

    pub fn validate(&self) -> Result<(), Error> {
        check_base_url(self.controller_url())
            .map_err(|e| Error::Config(format!("web.controller: {e}")))?;
        let title = self.title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
            return Err(Error::Config(format!(
                "web.title must have 1 to {MAX_TITLE_CHARS} characters"
            )));
        }
        if title.chars().any(char::is_control) {
            return Err(Error::Config(
                "web.title must not contain control characters".into(),
            ));
        }
        Ok(())
    }
}

/// Accepts `http(s)://host[:port]` with nothing after it but a slash: the
/// page appends `/api/...` to it.
fn check_base_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("https" | "http")) {
        return Err(format!("`{url}` must be an http(s):// URL"));
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("`{url}` has no host"));
    };
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return Err(format!("`{url}` must name a host and carry no credentials"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("`{url}` must be a base URL (no path or query)"));
    }
    Ok(())
}

/// Errors of the web role.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Http(#[from] vcdn_http::Error),
}

/// A bound web server, ready to run.
pub struct Web {
    server: Server,
}

/// Binds the web role's listener.
pub async fn build(config: &Config, serving: &Serving) -> Result<Web, Error> {
    config.validate()?;
    let state = Arc::new(page::State::new(config));
    let router = Router::new()
        .route("/", get(page::shell))
        .route("/dashboard", get(page::shell))
        .route("/watch/{*path}", get(page::shell))
        .route("/config.json", get(page::client_config))
        .route("/assets/{*file}", get(assets::handler))
        .route("/healthz", get(|| async { vcdn_http::healthz("web") }))
        .fallback(page::not_found)
        .with_state(state);
    let server = Server::bind(
        "web",
        &serving.at(config.listen),
        serving.tls.clone(),
        router,
    )
    .await?;
    Ok(Web { server })
}

impl Web {
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        Ok(self.server.run(shutdown).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.controller_url(), "https://localhost:8084");
        assert_eq!(config.listen.port(), 8000);
    }

    #[test]
    fn controller_must_be_a_base_url() {
        let with = |url: &str| Config {
            controller: Some(url.into()),
            ..Config::default()
        };
        assert!(with("https://cdn.example.net:8084").validate().is_ok());
        assert!(with("https://cdn.example.net:8084/").validate().is_ok());
        assert_eq!(
            with("https://cdn.example.net/").controller_url(),
            "https://cdn.example.net"
        );
        for bad in [
            "cdn.example.net:8084",
            "ftp://cdn.example.net",
            "https://cdn.example.net/api",
            "https://cdn.example.net/?a=b",
            "https://user:pw@cdn.example.net",
            "",
        ] {
            assert!(with(bad).validate().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn title_is_bounded() {
        let with = |title: &str| Config {
            title: title.into(),
            ..Config::default()
        };
        assert!(with("Acme Video").validate().is_ok());
        assert!(with("  ").validate().is_err());
        assert!(with(&"x".repeat(101)).validate().is_err());
        assert!(with("a\nb").validate().is_err());
    }
}
