//! Integration tests of the origin role, over real TLS sockets with a
//! per-run CA, through both HTTP/2 and HTTP/1.1.
//!
//! - `ranges`: single, suffix, open-ended, clamped, 416, ignored ranges.
//! - `head`: HEAD mirrors GET's headers.
//! - `conditionals`: ETag, Last-Modified, If-* and If-Range.
//! - `content_types`: media types and nested HLS/DASH trees.
//! - `catalog`: `GET /api/videos`.
//! - `paths`: path-escape attempts, sent raw.
//! - `limits`: oversized heads, slow and idle clients.
//! - `methods`: 405s and CORS.
//! - `service`: health and a large download.
//!
//! The modules live in `tests/origin/`, one test binary for all of them.

#[path = "origin/catalog.rs"]
mod catalog;
#[path = "origin/conditionals.rs"]
mod conditionals;
#[path = "origin/content_types.rs"]
mod content_types;
#[path = "origin/head.rs"]
mod head;
#[path = "origin/limits.rs"]
mod limits;
#[path = "origin/methods.rs"]
mod methods;
#[path = "origin/paths.rs"]
mod paths;
#[path = "origin/ranges.rs"]
mod ranges;
#[path = "origin/service.rs"]
mod service;
#[path = "origin/support.rs"]
mod support;
