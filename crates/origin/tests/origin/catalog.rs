//! `GET /api/videos`: the JSON catalog of the folder.

use serde_json::Value;
use vcdn_test_support::{TestCluster, pattern};

use crate::support::{SAMPLE_MP4, get, origin_with};

/// Fetches the catalog and checks its shape.
async fn catalog(cluster: &TestCluster) -> Value {
    let response = get(&cluster.client(), cluster, "/api/videos", &[]).await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .starts_with("application/json"),
        "{}",
        response.header("content-type")
    );
    let listing: Value = serde_json::from_slice(&response.body).expect("catalog is JSON");
    assert!(listing["truncated"].is_boolean(), "{listing}");
    assert!(listing["videos"].is_array(), "{listing}");
    listing
}

/// The listed paths, in the order given.
fn paths(listing: &Value) -> Vec<String> {
    listing["videos"]
        .as_array()
        .expect("videos array")
        .iter()
        .map(|v| v["path"].as_str().expect("path is a string").to_owned())
        .collect()
}

/// The entry for `path`; panics when it is not listed.
fn entry<'a>(listing: &'a Value, path: &str) -> &'a Value {
    listing["videos"]
        .as_array()
        .expect("videos array")
        .iter()
        .find(|v| v["path"] == path)
        .unwrap_or_else(|| panic!("{path} is not listed in {listing}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lists_videos_and_manifests_but_not_segments_or_images() {
    let mp4 = pattern(1234, 41);
    let webm = pattern(2345, 42);
    let m3u8 = b"#EXTM3U\n".to_vec();
    let mpd = b"<MPD/>\n".to_vec();
    let cluster = origin_with(&[
        ("movie.mp4", &mp4),
        ("clip.webm", &webm),
        ("show/index.m3u8", &m3u8),
        ("dash/manifest.mpd", &mpd),
        ("show/seg-001.ts", &pattern(100, 43)),
        ("dash/seg-001.m4s", &pattern(100, 44)),
        ("poster.jpg", &pattern(100, 45)),
        ("thumb.png", &pattern(100, 46)),
        ("notes.json", b"{}"),
        ("captions.vtt", b"WEBVTT\n"),
    ])
    .await;
    let listing = catalog(&cluster).await;
    let mut listed = paths(&listing);
    listed.sort();
    assert_eq!(
        listed,
        [
            "/clip.webm",
            "/dash/manifest.mpd",
            "/movie.mp4",
            "/show/index.m3u8"
        ]
    );
    assert_eq!(listing["truncated"], false);
    for (path, bytes, kind) in [
        ("/movie.mp4", &mp4, "video/mp4"),
        ("/clip.webm", &webm, "video/webm"),
        ("/show/index.m3u8", &m3u8, "application/vnd.apple.mpegurl"),
        ("/dash/manifest.mpd", &mpd, "application/dash+xml"),
    ] {
        let e = entry(&listing, path);
        assert_eq!(e["size"], bytes.len() as u64, "{path}");
        assert_eq!(e["content_type"], kind, "{path}");
        let modified = e["modified"].as_str().unwrap_or_default();
        assert!(
            modified.len() >= 20 && modified.contains('T') && modified.ends_with('Z'),
            "{path}: modified {modified:?} is RFC 3339 UTC"
        );
        assert!(e["etag"].as_str().is_some_and(|t| !t.is_empty()), "{path}");
        assert!(e.get("duration_seconds").is_some(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_entry_matches_what_the_file_serves() {
    let bytes = pattern(4321, 47);
    let cluster = origin_with(&[("movie.mp4", &bytes)]).await;
    let listing = catalog(&cluster).await;
    let e = entry(&listing, "/movie.mp4");
    let response = get(&cluster.client(), &cluster, "/movie.mp4", &[]).await;
    assert_eq!(response.status, 200);
    assert_eq!(e["etag"], response.header("etag"));
    assert_eq!(e["size"], response.content_length());
    assert_eq!(e["content_type"], response.header("content-type"));
    assert!(response.body == bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_sees_added_and_removed_files_without_restart() {
    let cluster = origin_with(&[("first.mp4", &pattern(100, 48))]).await;
    assert_eq!(paths(&catalog(&cluster).await), ["/first.mp4"]);

    let added = pattern(777, 49);
    cluster.put_video("later/second.mp4", &added);
    let listing = catalog(&cluster).await;
    let mut listed = paths(&listing);
    listed.sort();
    assert_eq!(listed, ["/first.mp4", "/later/second.mp4"]);
    assert_eq!(entry(&listing, "/later/second.mp4")["size"], 777);

    std::fs::remove_file(cluster.videos_dir().join("first.mp4")).expect("remove");
    assert_eq!(paths(&catalog(&cluster).await), ["/later/second.mp4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_reports_the_sample_video_duration() {
    let cluster = origin_with(&[("sample.mp4", SAMPLE_MP4)]).await;
    let listing = catalog(&cluster).await;
    let e = entry(&listing, "/sample.mp4");
    assert_eq!(e["size"], SAMPLE_MP4.len() as u64);
    assert_eq!(e["content_type"], "video/mp4");
    let duration = e["duration_seconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("no duration in {e}"));
    assert!((duration - 10.0).abs() < 0.1, "duration {duration}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_duration_is_null_for_a_non_mp4_named_mp4() {
    let cluster = origin_with(&[("fake.mp4", b"not a video at all, just some text\n")]).await;
    let listing = catalog(&cluster).await;
    let e = entry(&listing, "/fake.mp4");
    assert!(e["duration_seconds"].is_null(), "{e}");
    assert_eq!(e["size"], 35);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_skips_hidden_files_and_symlinks_leading_outside() {
    let mut cluster = TestCluster::new();
    let outside = cluster.scratch_dir().join("outside.mp4");
    std::fs::write(&outside, pattern(100, 50)).expect("write outside file");
    std::os::unix::fs::symlink(&outside, cluster.videos_dir().join("escape.mp4")).expect("symlink");
    std::os::unix::fs::symlink(
        cluster.scratch_dir(),
        cluster.videos_dir().join("elsewhere"),
    )
    .expect("dir symlink");
    cluster.put_video(".hidden.mp4", &pattern(100, 51));
    cluster.put_video(".git/objects.mp4", &pattern(100, 52));
    cluster.put_video("visible.mp4", &pattern(100, 53));
    cluster.start_origin().await;
    assert_eq!(paths(&catalog(&cluster).await), ["/visible.mp4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_rereads_the_duration_when_a_file_is_replaced() {
    let cluster = origin_with(&[("movie.mp4", b"a placeholder, not a video yet\n")]).await;
    let before = catalog(&cluster).await;
    assert!(entry(&before, "/movie.mp4")["duration_seconds"].is_null());

    cluster.put_video("movie.mp4", SAMPLE_MP4);
    let after = catalog(&cluster).await;
    let e = entry(&after, "/movie.mp4");
    assert_eq!(e["size"], SAMPLE_MP4.len() as u64);
    let duration = e["duration_seconds"]
        .as_f64()
        .expect("duration after replace");
    assert!((duration - 10.0).abs() < 0.1, "duration {duration}");
    assert_ne!(
        e["etag"],
        entry(&before, "/movie.mp4")["etag"],
        "a replaced file has a new ETag"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_stops_at_the_configured_maximum_and_says_so() {
    let mut cluster = TestCluster::new();
    for i in 0..5 {
        cluster.put_video(&format!("v{i}.mp4"), &pattern(10, i));
    }
    cluster
        .start_origin_with(vcdn_origin::Config {
            catalog_max_files: 3,
            ..vcdn_origin::Config::default()
        })
        .await;
    let listing = catalog(&cluster).await;
    assert_eq!(paths(&listing).len(), 3, "{listing}");
    assert_eq!(listing["truncated"], true);
}
