//! HTTP caching as RFC 9111 defines a shared cache, with RFC 5861's stale
//! extensions and RFC 9213's CDN-Cache-Control, against a real test origin.

use http::StatusCode;
use vcdn_test_support::origin::{Content, TestOrigin};
use vcdn_test_support::{RoleHandle, TestCluster, sha256};

const KIB: u64 = 1024;

async fn setup() -> (TestCluster, TestOrigin, RoleHandle) {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    let config = vcdn_replica::Config {
        chunk_bytes: 64 * KIB,
        min_free_disk_bytes: 0,
        ..Default::default()
    };
    let replica = cluster.start_replica(&origin.url(), config).await;
    (cluster, origin, replica)
}

struct Got {
    status: StatusCode,
    cache: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Got {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let headers = response.headers().clone();
    Got {
        status: response.status(),
        cache: headers
            .get("x-cache")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: response.bytes().await.unwrap().to_vec(),
        headers,
    }
}

fn content(seed: u64) -> Content {
    Content::Virtual {
        len: 150 * KIB,
        seed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdn_cache_control_takes_precedence_over_cache_control_for_this_cache() {
    let (cluster, origin, replica) = setup().await;
    let client = cluster.client();
    // Browsers must not store it, this CDN may for a minute.
    origin.set_cache_control("no-store");
    origin.set_header("CDN-Cache-Control", "max-age=60");
    origin.put("/a.mp4", content(1));
    let url = format!("{}/a.mp4", replica.url());
    assert_eq!(get(&client, &url, &[]).await.cache, "MISS");
    let second = get(&client, &url, &[]).await;
    assert_eq!(second.cache, "HIT");
    assert_eq!(
        second.headers["cache-control"], "no-store",
        "passed on to browsers"
    );
    assert!(
        !second.headers.contains_key("cdn-cache-control"),
        "consumed by this cache"
    );

    // And the other way round: cacheable for browsers, not for this CDN.
    let (cluster, origin, replica) = setup().await;
    let client = cluster.client();
    origin.set_cache_control("public, max-age=3600");
    origin.set_header("CDN-Cache-Control", "no-store");
    origin.put("/b.mp4", content(2));
    let url = format!("{}/b.mp4", replica.url());
    for _ in 0..2 {
        let got = get(&client, &url, &[]).await;
        assert_eq!(got.cache, "PASS");
        assert_eq!(sha256(&got.body), content(2).sha256());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_answers_at_once_and_revalidates_in_the_background() {
    let (cluster, origin, replica) = setup().await;
    let client = cluster.client();
    origin.set_cache_control("max-age=0, stale-while-revalidate=600");
    origin.put("/swr.mp4", content(3));
    let url = format!("{}/swr.mp4", replica.url());
    get(&client, &url, &[]).await;
    let before = origin.requests().len();

    let stale = get(&client, &url, &[]).await;
    assert_eq!(stale.cache, "STALE");
    assert_eq!(sha256(&stale.body), content(3).sha256());
    // The revalidation happens once, in the background, conditionally.
    origin.wait_requests(before + 1).await;
    let revalidation = origin.requests()[before].clone();
    assert!(revalidation.if_range.is_none());
    assert_eq!(revalidation.status, StatusCode::NOT_MODIFIED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_the_stored_copy_when_the_origin_fails() {
    let (cluster, origin, replica) = setup().await;
    let client = cluster.client();
    origin.set_cache_control("max-age=0, stale-if-error=600");
    origin.put("/sie.mp4", content(4));
    let url = format!("{}/sie.mp4", replica.url());
    get(&client, &url, &[]).await;

    origin.fail_with(Some(StatusCode::INTERNAL_SERVER_ERROR));
    let got = get(&client, &url, &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.cache, "STALE");
    assert_eq!(sha256(&got.body), content(4).sha256());

    // The error did not cost the stored copy.
    origin.fail_with(None);
    let again = get(&client, &url, &[]).await;
    assert_eq!(again.cache, "REVALIDATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_stale_if_error_the_origin_error_reaches_the_viewer() {
    let (cluster, origin, replica) = setup().await;
    let client = cluster.client();
    origin.set_cache_control("max-age=0");
    origin.put("/e.mp4", content(5));
    let url = format!("{}/e.mp4", replica.url());
    get(&client, &url, &[]).await;
    origin.fail_with(Some(StatusCode::SERVICE_UNAVAILABLE));
    let got = get(&client, &url, &[]).await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_origin_gets_stale_content_served_unless_must_revalidate() {
    for (cache_control, served_stale) in
        [("max-age=0", true), ("max-age=0, must-revalidate", false)]
    {
        let (cluster, origin, replica) = setup().await;
        let client = cluster.client();
        origin.set_cache_control(cache_control);
        origin.put("/d.mp4", content(6));
        let url = format!("{}/d.mp4", replica.url());
        get(&client, &url, &[]).await;
        origin.stop();
        let got = get(&cluster.client(), &url, &[]).await;
        if served_stale {
            assert_eq!(got.status, StatusCode::OK, "{cache_control}");
            assert_eq!(got.cache, "STALE");
            assert_eq!(sha256(&got.body), content(6).sha256());
        } else {
            assert!(
                got.status.is_server_error(),
                "{cache_control}: {}",
                got.status
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_no_cache_and_max_age_zero_make_the_replica_revalidate() {
    let (cluster, origin, replica) = setup().await;
    let client = cluster.client();
    origin.put("/n.mp4", content(7));
    let url = format!("{}/n.mp4", replica.url());
    get(&client, &url, &[]).await;
    assert_eq!(get(&client, &url, &[]).await.cache, "HIT");

    for directive in [
        ("cache-control", "no-cache"),
        ("cache-control", "max-age=0"),
        ("pragma", "no-cache"),
    ] {
        let before = origin.requests().len();
        let got = get(&client, &url, &[directive]).await;
        assert_eq!(got.cache, "REVALIDATED", "{directive:?}");
        let asked = &origin.requests()[before..];
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].status, StatusCode::NOT_MODIFIED);
        assert_eq!(sha256(&got.body), content(7).sha256());
    }
    // max-stale accepts a stale copy without asking.
    origin.set_cache_control("max-age=0");
    origin.put("/s.mp4", content(8));
    let url = format!("{}/s.mp4", replica.url());
    get(&client, &url, &[]).await;
    let before = origin.requests().len();
    let got = get(&client, &url, &[("cache-control", "max-stale")]).await;
    assert_eq!(got.cache, "STALE");
    assert_eq!(origin.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_if_cached_never_contacts_the_origin() {
    let (cluster, origin, replica) = setup().await;
    let client = cluster.client();
    origin.put("/o.mp4", content(9));
    let url = format!("{}/o.mp4", replica.url());
    let cold = get(&client, &url, &[("cache-control", "only-if-cached")]).await;
    assert_eq!(cold.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(origin.requests().is_empty());
    get(&client, &url, &[]).await;
    let warm = get(&client, &url, &[("cache-control", "only-if-cached")]).await;
    assert_eq!(warm.status, StatusCode::OK);
    assert_eq!(warm.cache, "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_no_store_is_answered_but_not_stored() {
    let (cluster, origin, replica) = setup().await;
    let client = cluster.client();
    origin.put("/x.mp4", content(10));
    let url = format!("{}/x.mp4", replica.url());
    let got = get(&client, &url, &[("cache-control", "no-store")]).await;
    assert_eq!(got.cache, "PASS");
    assert_eq!(sha256(&got.body), content(10).sha256());
    assert_eq!(
        get(&client, &url, &[]).await.cache,
        "MISS",
        "nothing was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_unsafe_request_invalidates_the_stored_url() {
    let (cluster, origin, replica) = setup().await;
    let client = cluster.client();
    origin.put("/u.mp4", content(11));
    let url = format!("{}/u.mp4", replica.url());
    get(&client, &url, &[]).await;
    assert_eq!(get(&client, &url, &[]).await.cache, "HIT");
    for method in [http::Method::POST, http::Method::PUT, http::Method::DELETE] {
        let response = client
            .request(method.clone(), &url)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-cache"], "PASS");
        assert_eq!(
            get(&client, &url, &[]).await.cache,
            "MISS",
            "after {method}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_updates_the_stored_headers() {
    let (cluster, origin, replica) = setup().await;
    let client = cluster.client();
    origin.set_cache_control("max-age=0");
    origin.put("/h.mp4", content(12));
    let url = format!("{}/h.mp4", replica.url());
    get(&client, &url, &[]).await;

    origin.set_cache_control("public, max-age=600");
    let revalidated = get(&client, &url, &[]).await;
    assert_eq!(revalidated.cache, "REVALIDATED");
    assert_eq!(revalidated.headers["cache-control"], "public, max-age=600");
    let hit = get(&client, &url, &[]).await;
    assert_eq!(hit.cache, "HIT", "fresh for ten minutes now");
    assert_eq!(hit.headers["cache-control"], "public, max-age=600");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_counts_time_spent_in_caches_upstream() {
    let (cluster, origin, replica) = setup().await;
    let client = cluster.client();
    // Already 100 s old with a 60 s lifetime: stale on arrival.
    origin.set_cache_control("max-age=60");
    origin.set_header("Age", "100");
    origin.put("/age.mp4", content(13));
    let url = format!("{}/age.mp4", replica.url());
    let first = get(&client, &url, &[]).await;
    let age: u64 = first.headers["age"].to_str().unwrap().parse().unwrap();
    assert!(age >= 100, "age {age}");
    assert_eq!(get(&client, &url, &[]).await.cache, "REVALIDATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_that_vary_are_stored_and_served_per_variant() {
    let (cluster, origin, replica) = setup().await;
    let client = cluster.client();
    let french = content(20);
    let english = content(21);
    origin.put_variant("/talk.mp4", "fr", french.clone());
    origin.put_variant("/talk.mp4", "en", english.clone());
    let url = format!("{}/talk.mp4", replica.url());

    let fr = get(&client, &url, &[("accept-language", "fr")]).await;
    assert_eq!(fr.cache, "MISS");
    assert_eq!(sha256(&fr.body), french.sha256());
    assert_eq!(fr.headers["vary"], "Accept-Language");
    let en = get(&client, &url, &[("accept-language", "en")]).await;
    assert_eq!(en.cache, "MISS", "another variant is another object");
    assert_eq!(sha256(&en.body), english.sha256());

    for _ in 0..2 {
        let fr = get(&client, &url, &[("accept-language", "fr")]).await;
        assert_eq!(
            (fr.cache.as_str(), sha256(&fr.body)),
            ("HIT", french.sha256())
        );
        let en = get(&client, &url, &[("accept-language", "en")]).await;
        assert_eq!(
            (en.cache.as_str(), sha256(&en.body)),
            ("HIT", english.sha256())
        );
    }
    // Ranges of a variant come from that variant.
    let range = get(
        &client,
        &url,
        &[("accept-language", "en"), ("range", "bytes=70000-70099")],
    )
    .await;
    assert_eq!(range.body, english.slice(70_000, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_star_and_unkeyable_vary_are_passed_through() {
    for vary in ["*", "User-Agent"] {
        let (cluster, origin, replica) = setup().await;
        let client = cluster.client();
        origin.set_header("Vary", vary);
        origin.put("/any.mp4", content(22));
        let url = format!("{}/any.mp4", replica.url());
        for _ in 0..2 {
            let got = get(&client, &url, &[]).await;
            assert_eq!(got.cache, "PASS", "Vary: {vary}");
            assert_eq!(sha256(&got.body), content(22).sha256());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncacheable_url_is_passed_straight_through_after_the_first_answer() {
    let (cluster, origin, replica) = setup().await;
    let client = cluster.client();
    origin.set_cache_control("private");
    origin.put("/me.mp4", content(30));
    let url = format!("{}/me.mp4", replica.url());
    get(&client, &url, &[]).await;
    for _ in 0..3 {
        let before = origin.requests().len();
        let got = get(&client, &url, &[]).await;
        assert_eq!(got.cache, "PASS");
        assert_eq!(sha256(&got.body), content(30).sha256());
        assert_eq!(
            origin.requests().len(),
            before + 1,
            "one origin request per viewer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_video_is_cached_as_a_404_and_replaced_when_it_appears() {
    let (cluster, origin, replica) = setup().await;
    let client = cluster.client();
    let page = Content::Virtual { len: 300, seed: 7 };
    origin.put_status(
        "/soon.mp4",
        StatusCode::NOT_FOUND,
        page.clone(),
        &[("cache-control", "max-age=3600")],
    );
    let url = format!("{}/soon.mp4", replica.url());

    // Many viewers of a missing video cost the origin one request.
    let first = get(&client, &url, &[]).await;
    assert_eq!(
        (first.status, first.cache.as_str()),
        (StatusCode::NOT_FOUND, "MISS")
    );
    for _ in 0..5 {
        // A seek into it gets the 404 whole, not a range of it.
        let again = get(&client, &url, &[("range", "bytes=100-199")]).await;
        assert_eq!(
            (again.status, again.cache.as_str()),
            (StatusCode::NOT_FOUND, "HIT")
        );
        assert_eq!(sha256(&again.body), page.sha256());
        assert!(!again.headers.contains_key("content-range"));
        assert!(!again.headers.contains_key("accept-ranges"));
        assert!(again.headers.contains_key("age"));
    }
    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    assert_eq!(head.headers()["content-length"], "300");
    assert_eq!(origin.requests_for("/soon.mp4").len(), 1);

    // Published: a viewer who reloads (so the stored 404 is checked
    // again) gets the video, and it replaces the 404 for everyone.
    origin.put("/soon.mp4", content(3));
    let reloaded = get(&client, &url, &[("cache-control", "no-cache")]).await;
    assert_eq!(
        (reloaded.status, reloaded.cache.as_str()),
        (StatusCode::OK, "MISS")
    );
    assert_eq!(sha256(&reloaded.body), content(3).sha256());
    let hit = get(&client, &url, &[("range", "bytes=0-99")]).await;
    assert_eq!(
        (hit.status, hit.cache.as_str()),
        (StatusCode::PARTIAL_CONTENT, "HIT")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_ttl_applies_only_where_a_heuristic_lifetime_may() {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    let config = vcdn_replica::Config {
        chunk_bytes: 64 * KIB,
        min_free_disk_bytes: 0,
        default_ttl_ms: Some(3_600_000),
        ..Default::default()
    };
    let replica = cluster.start_replica(&origin.url(), config).await;
    let client = cluster.client();
    type Case = (
        &'static str,
        StatusCode,
        &'static [(&'static str, &'static str)],
        &'static str,
    );
    let cases: [Case; 6] = [
        // No freshness stated: the default TTL makes it a hit.
        ("/plain.mp4", StatusCode::OK, &[], "HIT"),
        ("/gone.mp4", StatusCode::NOT_FOUND, &[], "HIT"),
        (
            "/public-redirect",
            StatusCode::FOUND,
            &[("cache-control", "public")],
            "HIT",
        ),
        // Explicit freshness wins over the default.
        (
            "/zero.mp4",
            StatusCode::OK,
            &[("cache-control", "max-age=0")],
            "REVALIDATED",
        ),
        (
            "/no-cache.mp4",
            StatusCode::OK,
            &[("cache-control", "no-cache")],
            "REVALIDATED",
        ),
        // A 302 is not heuristically cacheable: not stored at all.
        ("/redirect", StatusCode::FOUND, &[], "PASS"),
    ];
    for (path, status, headers, want) in cases {
        origin.put_status(path, status, content(4), headers);
        let url = format!("{}{path}", replica.url());
        get(&client, &url, &[]).await;
        let second = get(&client, &url, &[]).await;
        assert_eq!(
            (second.status, second.cache.as_str()),
            (status, want),
            "{path}"
        );
    }
}
