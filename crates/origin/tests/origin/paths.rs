//! No request path reaches a byte outside the videos folder.
//!
//! A secret file with a unique marker lies in the scratch folder, next to
//! the videos folder (`<tmp>/scratch/secret.txt` beside `<tmp>/videos`), so
//! `../scratch/secret.txt` from the videos folder would reach it. Every
//! attempt is sent byte for byte by the raw client (reqwest would resolve
//! the dot segments before sending) and must get the exact refusal status
//! with no byte of the secret anywhere in the response.

use vcdn_test_support::{TestCluster, pattern};

use crate::support::{RawResponse, contains, raw_get};

/// A running origin with a secret outside its folder and the traps that
/// point at it.
struct Escape {
    cluster: TestCluster,
    marker: String,
    sample: Vec<u8>,
}

async fn escape_setup() -> Escape {
    let mut cluster = TestCluster::new();
    let marker = format!(
        "VCDN-SECRET-{}-{}",
        std::process::id(),
        vcdn_test_support::sha256(cluster.videos_dir().to_string_lossy().as_bytes())
    );
    let secret = cluster.scratch_dir().join("secret.txt");
    std::fs::write(&secret, format!("{marker}\n{marker}\n")).expect("write secret");

    let sample = pattern(2000, 61);
    cluster.put_video("sample.mp4", &sample);
    cluster.put_video("subdir/inside.mp4", &pattern(100, 62));
    cluster.put_video(".hidden", marker.as_bytes());
    let videos = cluster.videos_dir();
    std::os::unix::fs::symlink(&secret, videos.join("link-to-secret.mp4")).expect("file symlink");
    std::os::unix::fs::symlink(cluster.scratch_dir(), videos.join("outside")).expect("dir symlink");
    cluster.start_origin().await;
    Escape {
        cluster,
        marker,
        sample,
    }
}

impl Escape {
    /// Sends `path` raw and asserts the status and that nothing of the
    /// secret came back.
    async fn refused(&self, path: &str, status: u16) -> RawResponse {
        let response = raw_get(&self.cluster, path).await;
        assert_eq!(
            response.status,
            status,
            "{path}: {}",
            String::from_utf8_lossy(&response.raw)
        );
        assert!(
            !contains(&response.raw, self.marker.as_bytes()),
            "{path}: the secret leaked"
        );
        assert!(
            !contains(&response.raw, b"VCDN-SECRET"),
            "{path}: part of the secret leaked"
        );
        response
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_client_fetches_an_ordinary_file() {
    // Shows the raw client works, so the refusals below are the server's.
    let e = escape_setup().await;
    let response = raw_get(&e.cluster, "/sample.mp4").await;
    assert_eq!(response.status, 200);
    assert!(response.body() == e.sample.as_slice());
    let nested = raw_get(&e.cluster, "/subdir/inside.mp4").await;
    assert_eq!(nested.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_dot_segment_is_400() {
    let e = escape_setup().await;
    e.refused("/../scratch/secret.txt", 400).await;
    e.refused("/subdir/../../scratch/secret.txt", 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segment_is_400() {
    let e = escape_setup().await;
    e.refused("/./sample.mp4", 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_dot_dot_is_400() {
    let e = escape_setup().await;
    e.refused("/%2e%2e/scratch/secret.txt", 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_dot_dot_and_slash_is_400() {
    let e = escape_setup().await;
    e.refused("/%2E%2E%2Fscratch%2Fsecret.txt", 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_dot_with_encoded_slash_is_400() {
    let e = escape_setup().await;
    e.refused("/..%2fscratch%2fsecret.txt", 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_encoded_dot_dot_is_decoded_once_and_not_found() {
    let e = escape_setup().await;
    e.refused("/%252e%252e/scratch/secret.txt", 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_backslash_dot_dot_is_400() {
    let e = escape_setup().await;
    e.refused("/..%5cscratch%5csecret.txt", 400).await;
    e.refused("/%5c..%5cscratch%5csecret.txt", 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_byte_in_path_is_400() {
    let e = escape_setup().await;
    e.refused("/sample.mp4%00.txt", 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_slash_absolute_path_stays_inside_the_folder() {
    let e = escape_setup().await;
    let response = e.refused("//etc/passwd", 404).await;
    assert!(!contains(&response.raw, b"root:"), "/etc/passwd leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_system_path_is_looked_up_inside_the_folder() {
    let e = escape_setup().await;
    let response = e.refused("/etc/passwd", 404).await;
    assert!(!contains(&response.raw, b"root:"), "/etc/passwd leaked");
    let secret = e.cluster.scratch_dir().join("secret.txt");
    e.refused(&secret.to_string_lossy(), 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_to_a_file_outside_the_folder_is_404() {
    let e = escape_setup().await;
    e.refused("/link-to-secret.mp4", 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinked_directory_outside_the_folder_is_404() {
    let e = escape_setup().await;
    e.refused("/outside/secret.txt", 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_file_is_404() {
    let e = escape_setup().await;
    e.refused("/.hidden", 404).await;
    e.refused("/%2ehidden", 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_is_404() {
    let e = escape_setup().await;
    e.refused("/subdir/", 404).await;
    e.refused("/subdir", 404).await;
    e.refused("/", 404).await;
}
