//! RFC 9111 as a table: every response-side rule crossed with every
//! request-side rule.
//!
//! Each row is a response the origin sends (its caching headers); each
//! column a request directive a viewer sends on its second request for the
//! URL. A cell says what the viewer must get and what the origin must see:
//!
//! - `H`  hit: served from the cache, the origin is not asked.
//! - `R`  revalidated: one conditional request (`If-None-Match`, answered
//!   304), then served from the cache.
//! - `S`  stale: served stale as the request allows, the origin not asked.
//! - `W`  stale while revalidating: served stale at once, and one
//!   conditional request goes out in the background.
//! - `M`  refetched: a stored response without validators (a 404, say)
//!   can only be fetched again: one plain request, served as a `MISS`.
//! - `P`  passed through: the response was not stored.
//! - `G`  504: `only-if-cached` and nothing usable stored; origin not asked.
//!
//! The first request of every case is a plain GET: `MISS` when the row is
//! storable, `PASS` when it is not. Rows other than 200 test which status
//! codes are stored by default and which only with explicit freshness
//! (RFC 9110 §15.1, RFC 9111 §3, §4.2.2).

use std::time::{Duration, SystemTime};

use vcdn_test_support::TestCluster;
use vcdn_test_support::origin::Content;

/// The request directives, one column each.
const COLUMNS: [(&str, Option<(&str, &str)>); 8] = [
    ("plain", None),
    ("no-cache", Some(("cache-control", "no-cache"))),
    ("pragma", Some(("pragma", "no-cache"))),
    ("max-age=0", Some(("cache-control", "max-age=0"))),
    ("max-stale", Some(("cache-control", "max-stale"))),
    ("only-if-cached", Some(("cache-control", "only-if-cached"))),
    ("no-store", Some(("cache-control", "no-store"))),
    ("min-fresh", Some(("cache-control", "min-fresh=7200"))),
];

struct Row {
    name: &'static str,
    status: u16,
    headers: Vec<(&'static str, String)>,
    storable: bool,
    /// One cell per column.
    expect: &'static str,
}

fn date(offset_seconds: i64) -> String {
    let now = SystemTime::now();
    let t = if offset_seconds >= 0 {
        now + Duration::from_secs(offset_seconds as u64)
    } else {
        now - Duration::from_secs(offset_seconds.unsigned_abs())
    };
    httpdate::fmt_http_date(t)
}

fn rows() -> Vec<Row> {
    let cc = |v: &str| vec![("cache-control", v.to_owned())];
    let row = |name, headers, storable, expect| Row {
        name,
        status: 200,
        headers,
        storable,
        expect,
    };
    let status_row = |status, name, headers, storable, expect| Row {
        name,
        status,
        headers,
        storable,
        expect,
    };
    let long_ago = || vec![("last-modified", date(-100 * 86400))];
    vec![
        //                                                                  plain nc pr ma0 ms oic ns mf
        row("max-age fresh", cc("max-age=3600"), true, "HRRRHHHR"),
        row(
            "public max-age",
            cc("public, max-age=3600"),
            true,
            "HRRRHHHR",
        ),
        row("max-age long", cc("max-age=86400"), true, "HRRRHHHH"),
        row(
            "s-maxage over max-age=0",
            cc("s-maxage=86400, max-age=0"),
            true,
            "HRRRHHHH",
        ),
        row(
            "s-maxage=0 over max-age",
            cc("s-maxage=0, max-age=3600"),
            true,
            "RRRRRGRR",
        ),
        row("directive case", cc("Max-Age=3600"), true, "HRRRHHHR"),
        row("quoted max-age", cc("max-age=\"3600\""), true, "HRRRHHHR"),
        row("max-age=0", cc("max-age=0"), true, "RRRRSGRR"),
        row("invalid max-age", cc("max-age=soon"), true, "RRRRSGRR"),
        row("no-cache", cc("no-cache"), true, "RRRRRGRR"),
        row(
            "no-cache with max-age",
            cc("no-cache, max-age=3600"),
            true,
            "RRRRRGRR",
        ),
        row(
            "must-revalidate stale",
            cc("max-age=0, must-revalidate"),
            true,
            "RRRRRGRR",
        ),
        row(
            "proxy-revalidate stale",
            cc("max-age=0, proxy-revalidate"),
            true,
            "RRRRRGRR",
        ),
        row(
            "must-revalidate fresh",
            cc("max-age=3600, must-revalidate"),
            true,
            "HRRRHHHR",
        ),
        row("no-store", cc("no-store"), false, "PPPPPGPP"),
        row(
            "no-store with max-age",
            cc("max-age=3600, no-store"),
            false,
            "PPPPPGPP",
        ),
        row("private", cc("private, max-age=3600"), false, "PPPPPGPP"),
        row(
            "private with fields",
            cc("private=\"set-cookie\", max-age=60"),
            false,
            "PPPPPGPP",
        ),
        row(
            "Age beyond max-age",
            vec![
                ("cache-control", "max-age=60".into()),
                ("age", "100".into()),
            ],
            true,
            "RRRRSGRR",
        ),
        row(
            "Age within max-age",
            vec![
                ("cache-control", "max-age=3600".into()),
                ("age", "100".into()),
            ],
            true,
            "HRRRHHHR",
        ),
        row(
            "Expires ahead",
            vec![("expires", date(3600))],
            true,
            "HRRRHHHR",
        ),
        row(
            "Expires past",
            vec![("expires", date(-3600))],
            true,
            "RRRRSGRR",
        ),
        row(
            "Expires invalid",
            vec![("expires", "0".into())],
            true,
            "RRRRSGRR",
        ),
        row(
            "max-age over Expires",
            vec![
                ("cache-control", "max-age=0".into()),
                ("expires", date(3600)),
            ],
            true,
            "RRRRSGRR",
        ),
        row(
            "heuristic from Last-Modified",
            vec![("last-modified", date(-100 * 86400))],
            true,
            "HRRRHHHH",
        ),
        row("no freshness at all", vec![], true, "RRRRSGRR"),
        row(
            "CDN-Cache-Control over no-store",
            vec![
                ("cache-control", "no-store".into()),
                ("cdn-cache-control", "max-age=3600".into()),
            ],
            true,
            "HRRRHHHR",
        ),
        row(
            "CDN-Cache-Control no-store",
            vec![
                ("cache-control", "max-age=3600".into()),
                ("cdn-cache-control", "no-store".into()),
            ],
            false,
            "PPPPPGPP",
        ),
        row(
            "CDN-Cache-Control stale",
            vec![
                ("cache-control", "max-age=3600".into()),
                ("cdn-cache-control", "max-age=0".into()),
            ],
            true,
            "RRRRSGRR",
        ),
        row(
            "vcdn-targeted over CDN",
            vec![
                ("cdn-cache-control", "no-store".into()),
                ("vcdn-cache-control", "max-age=3600".into()),
            ],
            true,
            "HRRRHHHR",
        ),
        row(
            "stale-while-revalidate",
            cc("max-age=0, stale-while-revalidate=600"),
            true,
            "WRRRSWWR",
        ),
        row(
            "stale-while-revalidate with must-revalidate",
            cc("max-age=0, stale-while-revalidate=600, must-revalidate"),
            true,
            "RRRRRGRR",
        ),
        row(
            "stale-if-error only",
            cc("max-age=0, stale-if-error=600"),
            true,
            "RRRRSGRR",
        ),
        row(
            "Vary Accept-Encoding",
            vec![
                ("cache-control", "max-age=3600".into()),
                ("vary", "Accept-Encoding".into()),
            ],
            true,
            "HRRRHHHR",
        ),
        row(
            "Vary *",
            vec![
                ("cache-control", "max-age=3600".into()),
                ("vary", "*".into()),
            ],
            false,
            "PPPPPGPP",
        ),
        row(
            "Vary User-Agent",
            vec![
                ("cache-control", "max-age=3600".into()),
                ("vary", "User-Agent".into()),
            ],
            false,
            "PPPPPGPP",
        ),
        //                                                                  plain nc pr ma0 ms oic ns mf
        status_row(404, "404 max-age", cc("max-age=3600"), true, "HMMMHHHM"),
        status_row(404, "404 heuristic", long_ago(), true, "HMMMHHHH"),
        // Never fresh and nothing to revalidate with: not worth storing.
        status_row(404, "404 no freshness", vec![], false, "PPPPPGPP"),
        status_row(
            404,
            "404 stale-if-error",
            cc("max-age=0, stale-if-error=60"),
            true,
            "MMMMSGMM",
        ),
        status_row(404, "404 no-store", cc("no-store"), false, "PPPPPGPP"),
        status_row(410, "410 max-age", cc("max-age=3600"), true, "HMMMHHHM"),
        status_row(301, "301 heuristic", long_ago(), true, "HMMMHHHH"),
        status_row(308, "308 max-age", cc("max-age=3600"), true, "HMMMHHHM"),
        status_row(204, "204 heuristic", long_ago(), true, "HMMMHHHH"),
        status_row(203, "203 heuristic", long_ago(), true, "HMMMHHHH"),
        status_row(405, "405 heuristic", long_ago(), true, "HMMMHHHH"),
        status_row(501, "501 heuristic", long_ago(), true, "HMMMHHHH"),
        status_row(302, "302 no freshness", long_ago(), false, "PPPPPGPP"),
        status_row(302, "302 max-age", cc("max-age=3600"), true, "HMMMHHHM"),
        status_row(
            307,
            "307 public heuristic",
            vec![
                ("cache-control", "public".into()),
                ("last-modified", date(-100 * 86400)),
            ],
            true,
            "HMMMHHHH",
        ),
        status_row(
            307,
            "307 Expires ahead",
            vec![("expires", date(3600))],
            true,
            "HMMMHHHM",
        ),
        status_row(403, "403 no freshness", long_ago(), false, "PPPPPGPP"),
        status_row(403, "403 s-maxage", cc("s-maxage=3600"), true, "HMMMHHHM"),
        status_row(500, "500 no freshness", long_ago(), false, "PPPPPGPP"),
        status_row(503, "503 no freshness", vec![], false, "PPPPPGPP"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_rule_against_every_request_rule() {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    let config = vcdn_replica::Config {
        chunk_bytes: 64 * 1024,
        min_free_disk_bytes: 0,
        ..Default::default()
    };
    let replica = cluster.start_replica(&origin.url(), config).await;
    let client = cluster.client();
    let content = Content::Virtual {
        len: 10_000,
        seed: 1,
    };

    let mut cases = 0;
    let mut failures = Vec::new();
    for (r, row) in rows().into_iter().enumerate() {
        assert_eq!(row.expect.len(), COLUMNS.len(), "row {}", row.name);
        for ((column, directive), expect) in COLUMNS.iter().zip(row.expect.chars()) {
            cases += 1;
            let path = format!("/r{r}-{column}.mp4");
            let headers: Vec<(&str, &str)> =
                row.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let row_status = http::StatusCode::from_u16(row.status).unwrap();
            origin.put_status(&path, row_status, content.clone(), &headers);
            let want_len = if row.status == 204 { 0 } else { 10_000 };
            let url = format!("{}{path}", replica.url());

            let first = client.get(&url).send().await.unwrap();
            let first_status = first.status().as_u16();
            let first_cache = first.headers()["x-cache"].to_str().unwrap().to_owned();
            let first_body = first.bytes().await.unwrap();
            let want_first = if row.storable { "MISS" } else { "PASS" };
            let before = origin.requests_for(&path).len();

            let mut request = client.get(&url);
            if let Some((name, value)) = directive {
                request = request.header(*name, *value);
            }
            let second = request.send().await.unwrap();
            let status = second.status().as_u16();
            let cache = second.headers()["x-cache"].to_str().unwrap().to_owned();
            let body = second.bytes().await.unwrap();
            if expect == 'W' {
                origin.wait_requests_for(&path, before + 1).await;
            }
            let seen = origin.requests_for(&path)[before..].to_vec();

            let conditional = |seen: &[vcdn_test_support::origin::Logged]| {
                seen.len() == 1 && seen[0].if_none_match.is_some() && seen[0].status == 304
            };
            let refetched = |seen: &[vcdn_test_support::origin::Logged]| {
                seen.len() == 1 && seen[0].if_none_match.is_none() && seen[0].status == row_status
            };
            let want = row.status;
            let ok = first_cache == want_first
                && first_status == want
                && first_body.len() == want_len
                && match expect {
                    'H' => status == want && cache == "HIT" && seen.is_empty(),
                    'R' => status == want && cache == "REVALIDATED" && conditional(&seen),
                    'M' => status == want && cache == "MISS" && refetched(&seen),
                    'S' => status == want && cache == "STALE" && seen.is_empty(),
                    'W' => status == want && cache == "STALE" && conditional(&seen),
                    'P' => status == want && cache == "PASS" && !seen.is_empty(),
                    'G' => status == 504 && seen.is_empty(),
                    _ => false,
                }
                && (expect == 'G' || body.len() == want_len);
            if !ok {
                failures.push(format!(
                    "{} / {column}: expected {expect} (first {want_first}), got first {first_status} {first_cache}, then {status} {cache}, origin saw {:?}",
                    row.name,
                    seen.iter()
                        .map(|s| format!("{} inm={:?}", s.status, s.if_none_match))
                        .collect::<Vec<_>>()
                ));
            }
        }
    }
    println!("{cases} cases, {} failed", failures.len());
    assert!(cases > 100);
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
