//! Media types by extension, and nested HLS/DASH trees.

use vcdn_test_support::pattern;

use crate::support::{clients, get, origin_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_type_follows_the_file_extension() {
    let cases = [
        ("a.mp4", "video/mp4"),
        ("a.m4s", "video/iso.segment"),
        ("a.m4a", "audio/mp4"),
        ("a.ts", "video/mp2t"),
        ("a.m3u8", "application/vnd.apple.mpegurl"),
        ("a.mpd", "application/dash+xml"),
        ("a.webm", "video/webm"),
        ("a.vtt", "text/vtt; charset=utf-8"),
        ("a.jpg", "image/jpeg"),
        ("a.png", "image/png"),
        ("a.json", "application/json"),
        ("UPPER.MP4", "video/mp4"),
    ];
    let files: Vec<(String, Vec<u8>)> = cases
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.to_string(), pattern(1000 + i, i as u64)))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let cluster = origin_with(&refs).await;
    let client = cluster.client();
    for ((name, expected), (_, bytes)) in cases.iter().zip(&files) {
        let response = get(&client, &cluster, &format!("/{name}"), &[]).await;
        assert_eq!(response.status, 200, "{name}");
        assert_eq!(response.header("content-type"), *expected, "{name}");
        assert_eq!(response.header("x-content-type-options"), "nosniff");
        assert!(response.body == *bytes, "{name}: body");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_extension_is_served_as_octet_stream() {
    let odd = pattern(300, 31);
    let bare = pattern(301, 32);
    let cluster = origin_with(&[("data.xyz", &odd), ("README", &bare)]).await;
    let client = cluster.client();
    for (path, bytes) in [("/data.xyz", &odd), ("/README", &bare)] {
        let response = get(&client, &cluster, path, &[]).await;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.header("content-type"),
            "application/octet-stream",
            "{path}"
        );
        assert!(response.body == *bytes, "{path}: body");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_hls_paths_are_served() {
    let playlist = b"#EXTM3U\n#EXT-X-VERSION:7\n#EXTINF:4.0,\nseg-001.m4s\n".to_vec();
    let init = pattern(700, 33);
    let segment = pattern(40_000, 34);
    let cluster = origin_with(&[
        ("show/v1/index.m3u8", &playlist),
        ("show/v1/init.mp4", &init),
        ("show/v1/seg-001.m4s", &segment),
    ])
    .await;
    for (client, version) in clients(&cluster) {
        for (path, bytes, kind) in [
            (
                "/show/v1/index.m3u8",
                &playlist,
                "application/vnd.apple.mpegurl",
            ),
            ("/show/v1/init.mp4", &init, "video/mp4"),
            ("/show/v1/seg-001.m4s", &segment, "video/iso.segment"),
        ] {
            let response = get(&client, &cluster, path, &[]).await;
            assert_eq!(response.version, version);
            assert_eq!(response.status, 200, "{path}");
            assert_eq!(response.header("content-type"), kind, "{path}");
            assert!(response.body == *bytes, "{path}: body");
        }
        let part = get(
            &client,
            &cluster,
            "/show/v1/seg-001.m4s",
            &[("range", "bytes=100-199")],
        )
        .await;
        assert_eq!(part.status, 206);
        assert!(part.body == segment[100..200]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_names_are_served() {
    let bytes = pattern(500, 35);
    let cluster = origin_with(&[("my show/part 1.mp4", &bytes)]).await;
    let response = get(&cluster.client(), &cluster, "/my%20show/part%201.mp4", &[]).await;
    assert_eq!(response.status, 200);
    assert!(response.body == bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_file_is_404() {
    let cluster = origin_with(&[("there.mp4", b"here")]).await;
    for (client, version) in clients(&cluster) {
        let response = get(&client, &cluster, "/not-there.mp4", &[]).await;
        assert_eq!(response.version, version);
        assert_eq!(response.status, 404);
    }
}
