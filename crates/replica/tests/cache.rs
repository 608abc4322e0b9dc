//! The replica's cache over time: restarts, the size bound, scan-resistant
//! eviction, the admin API, health and metrics.

use std::path::Path;

use http::StatusCode;
use vcdn_replica::eviction::Policy;
use vcdn_test_support::origin::{Content, TestOrigin};
use vcdn_test_support::{RoleHandle, TestCluster, sha256};

const KIB: u64 = 1024;
const TOKEN: &str = "s3cret-admin-token";

fn config(cache_dir: &Path, chunk: u64, max: u64, policy: Policy) -> vcdn_replica::Config {
    vcdn_replica::Config {
        cache_dir: cache_dir.to_owned(),
        chunk_bytes: chunk,
        cache_max_bytes: max,
        eviction: policy,
        read_ahead_chunks: 2,
        admin_token: Some(TOKEN.into()),
        min_free_disk_bytes: 0,
        ..Default::default()
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> (StatusCode, String, Vec<u8>) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status();
    let cache = response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, cache, response.bytes().await.unwrap().to_vec())
}

/// Bytes of every file under `dir`.
fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let meta = entry.metadata().unwrap();
            total += if meta.is_dir() {
                disk_usage(&entry.path())
            } else {
                meta.len()
            };
        }
    }
    total
}

/// Disk blocks taken by the object directories under `objects/` and
/// everything in them (the fixed shard folders above them excluded).
fn object_blocks(objects: &Path) -> u64 {
    fn blocks(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return 0;
        };
        let mut total = meta.blocks() * 512;
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                total += blocks(&entry.path());
            }
        }
        total
    }
    let mut total = 0;
    for shard in std::fs::read_dir(objects).into_iter().flatten().flatten() {
        for object in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            total += blocks(&object.path());
        }
    }
    total
}

async fn started(
    cluster: &TestCluster,
    origin: &TestOrigin,
    config: vcdn_replica::Config,
) -> RoleHandle {
    cluster.start_replica(&origin.url(), config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_serves_earlier_content_as_hits() {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    let cache = cluster.path("cache");
    let files: Vec<Content> = (0..3)
        .map(|i| Content::Virtual {
            len: 700 * KIB + i * 1000,
            seed: 100 + i,
        })
        .collect();
    for (i, content) in files.iter().enumerate() {
        origin.put(&format!("/f{i}.mp4"), content.clone());
    }
    let replica = started(
        &cluster,
        &origin,
        config(&cache, 256 * KIB, 64 << 20, Policy::S3Fifo),
    )
    .await;
    let client = cluster.client();
    for (i, content) in files.iter().enumerate() {
        let (_, cache_status, body) = fetch(&client, &format!("{}/f{i}.mp4", replica.url())).await;
        assert_eq!(cache_status, "MISS");
        assert_eq!(sha256(&body), content.sha256());
    }
    replica.stop().await;
    let origin_requests = origin.requests().len();

    let replica = started(
        &cluster,
        &origin,
        config(&cache, 256 * KIB, 64 << 20, Policy::S3Fifo),
    )
    .await;
    for (i, content) in files.iter().enumerate() {
        let (status, cache_status, body) =
            fetch(&client, &format!("{}/f{i}.mp4", replica.url())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cache_status, "HIT", "f{i} survives the restart");
        assert_eq!(sha256(&body), content.sha256());
    }
    assert_eq!(
        origin.requests().len(),
        origin_requests,
        "nothing fetched again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_use_stays_within_the_bound_under_five_times_the_cache_size() {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    let cache = cluster.path("cache");
    let chunk = 128 * KIB;
    let max = 2048 * KIB;
    let replica = started(
        &cluster,
        &origin,
        config(&cache, chunk, max, Policy::S3Fifo),
    )
    .await;
    let client = cluster.client();
    // 20 objects of 512 KiB: five times the cache.
    let mut peak = 0;
    for i in 0..20u64 {
        let content = Content::Virtual {
            len: 512 * KIB,
            seed: 200 + i,
        };
        origin.put(&format!("/w{i}.mp4"), content.clone());
        let (_, _, body) = fetch(&client, &format!("{}/w{i}.mp4", replica.url())).await;
        assert_eq!(sha256(&body), content.sha256());
        let used = disk_usage(&cache.join("objects"));
        peak = peak.max(used);
        // Chunks being written may come on top, and a small metadata file
        // per object.
        let bound = max + 3 * chunk + 20 * 4 * KIB;
        assert!(
            used <= bound,
            "after w{i}: {used} bytes on disk, bound {bound}"
        );
    }
    println!("peak disk use {peak} bytes with cache_max_bytes {max}");
    let health: serde_json::Value = client
        .get(format!("{}/healthz", replica.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(health["cache_bytes"].as_u64().unwrap() <= max);
    assert_eq!(health["cache_max_bytes"].as_u64().unwrap(), max);
}

/// Hits on a hot set after a scan of one-time objects, with `policy`.
async fn hot_set_hits_after_a_scan(policy: Policy) -> usize {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    let chunk = 64 * KIB;
    // Room for 16 one-chunk objects.
    let replica = started(
        &cluster,
        &origin,
        config(&cluster.path("cache"), chunk, 16 * chunk, policy),
    )
    .await;
    let client = cluster.client();
    let url = |name: &str| format!("{}/{name}", replica.url());
    for i in 0..4 {
        origin.put(
            &format!("/hot{i}.mp4"),
            Content::Virtual {
                len: chunk,
                seed: i,
            },
        );
    }
    for _ in 0..3 {
        for i in 0..4 {
            fetch(&client, &url(&format!("hot{i}.mp4"))).await;
        }
    }
    // A crawl of 48 objects read once: three times the cache.
    for i in 0..48 {
        origin.put(
            &format!("/scan{i}.mp4"),
            Content::Virtual {
                len: chunk,
                seed: 1000 + i,
            },
        );
        fetch(&client, &url(&format!("scan{i}.mp4"))).await;
    }
    let mut hits = 0;
    for i in 0..4 {
        let (_, cache_status, _) = fetch(&client, &url(&format!("hot{i}.mp4"))).await;
        hits += usize::from(cache_status == "HIT");
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_of_one_time_objects_does_not_evict_the_hot_set() {
    let s3_fifo = hot_set_hits_after_a_scan(Policy::S3Fifo).await;
    let lru = hot_set_hits_after_a_scan(Policy::Lru).await;
    println!("hot-set hits after a scan of 3x the cache: S3-FIFO {s3_fifo}/4, LRU {lru}/4");
    assert_eq!(s3_fifo, 4, "S3-FIFO keeps the hot set");
    assert_eq!(
        lru, 0,
        "plain LRU loses it (the comparison this test makes)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_during_an_active_stream_does_not_cut_it() {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    let chunk = 64 * KIB;
    let replica = started(
        &cluster,
        &origin,
        config(&cluster.path("cache"), chunk, 8 * chunk, Policy::S3Fifo),
    )
    .await;
    let long = Content::Virtual {
        len: 6 * chunk + 5,
        seed: 7,
    };
    origin.put("/long.mp4", long.clone());
    let client = cluster.client();
    let url = |name: &str| format!("{}/{name}", replica.url());

    // Cache the long one, then start watching it and pause after a piece.
    fetch(&client, &url("long.mp4")).await;
    let viewer = cluster.client();
    let mut response = viewer.get(url("long.mp4")).send().await.unwrap();
    let mut body = response.chunk().await.unwrap().unwrap().to_vec();

    // Meanwhile others fill the cache twice over: every chunk of the long
    // video is evicted while the first viewer is in the middle of it.
    for i in 0..16 {
        origin.put(
            &format!("/other{i}.mp4"),
            Content::Virtual {
                len: chunk,
                seed: 50 + i,
            },
        );
        fetch(&client, &url(&format!("other{i}.mp4"))).await;
    }
    while let Some(piece) = response.chunk().await.unwrap() {
        body.extend_from_slice(&piece);
    }
    assert_eq!(sha256(&body), long.sha256(), "the stream completed intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_prefetch_and_list_through_the_admin_api() {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    let replica = started(
        &cluster,
        &origin,
        config(&cluster.path("cache"), 64 * KIB, 64 << 20, Policy::S3Fifo),
    )
    .await;
    let client = cluster.client();
    let base = replica.url();
    let a = Content::Virtual {
        len: 300 * KIB,
        seed: 1,
    };
    origin.put("/show/a.mp4", a.clone());
    origin.put(
        "/show/b.mp4",
        Content::Virtual {
            len: 100 * KIB,
            seed: 2,
        },
    );
    origin.put(
        "/premiere.mp4",
        Content::Virtual {
            len: 500 * KIB,
            seed: 3,
        },
    );

    // Purge one path: the next request is a MISS again.
    fetch(&client, &format!("{base}/show/a.mp4")).await;
    assert_eq!(fetch(&client, &format!("{base}/show/a.mp4")).await.1, "HIT");
    let purged = client
        .post(format!("{base}/admin/purge"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "path": "/show/a.mp4" }))
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), StatusCode::OK);
    let (_, cache_status, body) = fetch(&client, &format!("{base}/show/a.mp4")).await;
    assert_eq!(cache_status, "MISS");
    assert_eq!(sha256(&body), a.sha256());

    // Purge a prefix.
    fetch(&client, &format!("{base}/show/b.mp4")).await;
    let purged: serde_json::Value = client
        .post(format!("{base}/admin/purge"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "prefix": "/show/" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(purged["purged"], 2);
    assert_eq!(
        fetch(&client, &format!("{base}/show/b.mp4")).await.1,
        "MISS"
    );

    // Prefetch: the first viewer's request is already a HIT. A path the
    // origin does not have (a 404 it lets caches keep, as vcdn's origin
    // does) is reported as failed.
    origin.put_status(
        "/not-there.mp4",
        StatusCode::NOT_FOUND,
        Content::Virtual { len: 10, seed: 1 },
        &[("cache-control", "max-age=10")],
    );
    let job: serde_json::Value = client
        .post(format!("{base}/admin/prefetch"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "paths": ["/premiere.mp4", "/not-there.mp4"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let progress: serde_json::Value = client
        .get(format!("{base}/admin/prefetch/{}?wait=true", job["id"]))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(progress["finished"], true);
    assert_eq!(progress["done"], 1);
    assert_eq!(progress["failed"], 1, "{progress}");
    assert!(
        progress["failures"][0].as_str().unwrap().contains("404"),
        "{progress}"
    );
    assert_eq!(
        fetch(&cluster.client(), &format!("{base}/premiere.mp4"))
            .await
            .1,
        "HIT"
    );

    // The listing shows what is cached.
    let listed: serde_json::Value = client
        .get(format!("{base}/admin/cache"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let premiere = listed["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["path"] == "/premiere.mp4")
        .expect("listed");
    assert_eq!(premiere["bytes"], 500 * KIB);
    assert_eq!(premiere["chunks"], premiere["total_chunks"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_without_the_right_token_get_401_and_change_nothing() {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    let replica = started(
        &cluster,
        &origin,
        config(&cluster.path("cache"), 64 * KIB, 64 << 20, Policy::S3Fifo),
    )
    .await;
    let client = cluster.client();
    let base = replica.url();
    origin.put(
        "/keep.mp4",
        Content::Virtual {
            len: 100 * KIB,
            seed: 4,
        },
    );
    fetch(&client, &format!("{base}/keep.mp4")).await;

    for token in [None, Some("wrong"), Some("")] {
        let mut request = client
            .post(format!("{base}/admin/purge"))
            .json(&serde_json::json!({ "path": "/keep.mp4" }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        assert_eq!(
            request.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        let listing = client
            .get(format!("{base}/admin/cache"))
            .bearer_auth(token.unwrap_or("x"))
            .send()
            .await
            .unwrap();
        assert_eq!(listing.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        fetch(&client, &format!("{base}/keep.mp4")).await.1,
        "HIT",
        "nothing was purged"
    );
    let requests_before = origin.requests().len();

    // With no token configured the API does not exist, and `/admin/` is
    // never forwarded to the origin.
    let open = started(
        &cluster,
        &origin,
        vcdn_replica::Config {
            admin_token: None,
            ..config(&cluster.path("cache-2"), 64 * KIB, 64 << 20, Policy::S3Fifo)
        },
    )
    .await;
    let response = client
        .post(format!("{}/admin/purge", open.url()))
        .json(&serde_json::json!({ "path": "/keep.mp4" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(origin.requests().len(), requests_before);
}

/// The value of one sample line in an OpenMetrics text.
fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_move_as_the_requests_do() {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    let replica = started(
        &cluster,
        &origin,
        config(&cluster.path("cache"), 64 * KIB, 64 << 20, Policy::S3Fifo),
    )
    .await;
    let client = cluster.client();
    let base = replica.url();
    let content = Content::Virtual {
        len: 200 * KIB,
        seed: 5,
    };
    origin.put("/m.mp4", content.clone());
    let scrape = || async {
        client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };

    let before = scrape().await;
    fetch(&client, &format!("{base}/m.mp4")).await;
    fetch(&client, &format!("{base}/m.mp4")).await;
    let after = scrape().await;

    let hit = "vcdn_replica_requests_total{status=\"200\",cache=\"hit\"}";
    let miss = "vcdn_replica_requests_total{status=\"200\",cache=\"miss\"}";
    assert_eq!(metric(&after, hit) - metric(&before, hit), 1.0);
    assert_eq!(metric(&after, miss) - metric(&before, miss), 1.0);
    let served = metric(&after, "vcdn_replica_served_bytes_total")
        - metric(&before, "vcdn_replica_served_bytes_total");
    assert_eq!(served, 2.0 * content.len() as f64);
    let fetched = metric(&after, "vcdn_replica_origin_bytes_total")
        - metric(&before, "vcdn_replica_origin_bytes_total");
    assert_eq!(fetched, content.len() as f64);
    assert!(metric(&after, "vcdn_replica_chunks_filled_total") >= 4.0);
    assert!(metric(&after, "vcdn_replica_origin_requests_total") >= 1.0);
    // Disk blocks: the chunks (all multiples of 4 KiB here) and 8 KiB for
    // the object's directory and metadata.
    let footprint = content.len() + 8 * KIB;
    assert_eq!(metric(&after, "vcdn_replica_cache_bytes"), footprint as f64);
    assert!(after.contains("vcdn_replica_index_rebuild_seconds"));

    let health: serde_json::Value = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["requests_total"], 2);
    assert_eq!(health["hits_total"], 1);
    assert_eq!(health["hit_ratio"], 0.5);
    assert_eq!(health["cache_bytes"], footprint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_disk_passes_uncached_content_through() {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    let replica = started(
        &cluster,
        &origin,
        vcdn_replica::Config {
            // More free space than any disk has: always "nearly full".
            min_free_disk_bytes: u64::MAX,
            ..config(&cluster.path("cache"), 64 * KIB, 64 << 20, Policy::S3Fifo)
        },
    )
    .await;
    let client = cluster.client();
    let content = Content::Virtual {
        len: 300 * KIB,
        seed: 6,
    };
    origin.put("/p.mp4", content.clone());
    let health: serde_json::Value = client
        .get(format!("{}/healthz", replica.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["low_disk"], true);
    let (status, cache_status, body) = fetch(&client, &format!("{}/p.mp4", replica.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cache_status, "PASS");
    assert_eq!(sha256(&body), content.sha256());
    assert_eq!(
        disk_usage(&cluster.path("cache").join("objects")),
        0,
        "nothing stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_objects_stay_within_the_bound_on_disk() {
    let cluster = TestCluster::new();
    let origin = cluster.start_test_origin().await;
    let cache = cluster.path("cache");
    let max = 128 * KIB;
    let replica = started(
        &cluster,
        &origin,
        config(&cache, 64 * KIB, max, Policy::S3Fifo),
    )
    .await;
    let client = cluster.client();
    // 100 objects of 500 bytes: 50 KB of content, but each takes a block
    // for its chunk, its directory and its metadata on disk.
    for i in 0..100u64 {
        let content = Content::Virtual {
            len: 500,
            seed: 900 + i,
        };
        origin.put(&format!("/small-{i}.jpg"), content.clone());
        let (_, _, body) = fetch(&client, &format!("{}/small-{i}.jpg", replica.url())).await;
        assert_eq!(sha256(&body), content.sha256());
        let used = object_blocks(&cache.join("objects"));
        // On top may come the object just written, until its admission
        // has evicted another. Were small objects counted by their bytes,
        // all 100 would stay: 1.2 MB.
        let bound = max + 3 * 4 * KIB;
        assert!(
            used <= bound,
            "after {i}: {used} bytes of disk blocks, bound {bound}"
        );
    }
}
