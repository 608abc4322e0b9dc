//! The test harness: real TLS with a per-run CA, real roles on
//! `127.0.0.1:0`, and clients that trust the CA.
//!
//! Tests start what they need through [`TestCluster`], talk to it over real
//! sockets with [`TestCluster::client`], and stop it by dropping it.

pub mod origin;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use vcdn_http::tls::LocalPki;
use vcdn_http::{CancellationToken, Limits, Serving};

/// Installs the TLS provider and a test log writer; call first in each test.
pub fn init() {
    vcdn_http::tls::install_default_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A running role inside the test process.
pub struct RoleHandle {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl RoleHandle {
    /// Runs a bound role in the test process: `run` is its
    /// `run(shutdown)`, given the token that stops it.
    pub fn spawn<F, E>(addr: SocketAddr, run: impl FnOnce(CancellationToken) -> F) -> RoleHandle
    where
        F: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Debug + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let running = run(shutdown.clone());
        let task = tokio::spawn(async move {
            running.await.expect("role runs");
        });
        RoleHandle {
            addr,
            shutdown,
            task: Some(task),
        }
    }

    /// `https://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// Stops the role gracefully and waits until it has stopped.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RoleHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A per-test cluster: its own CA and certificate, a videos folder, and the
/// roles started so far.
pub struct TestCluster {
    dir: tempfile::TempDir,
    pub pki: LocalPki,
    pub serving: Serving,
    pub origin: Option<RoleHandle>,
    replicas: std::sync::atomic::AtomicUsize,
}

impl TestCluster {
    /// A cluster with a fresh CA and an empty videos folder; no role runs yet.
    pub fn new() -> TestCluster {
        init();
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = LocalPki::ensure(&dir.path().join("cert"), &[]).expect("test PKI");
        let identity = vcdn_http::tls::Identity::from_files(&pki.cert, &pki.key).expect("identity");
        let serving = Serving {
            tls: identity.server_config().expect("server config"),
            limits: Limits::default(),
        };
        std::fs::create_dir_all(dir.path().join("videos")).expect("videos dir");
        TestCluster {
            dir,
            pki,
            serving,
            origin: None,
            replicas: Default::default(),
        }
    }

    /// The folder the origin serves.
    pub fn videos_dir(&self) -> PathBuf {
        self.dir.path().join("videos")
    }

    /// A scratch folder outside the videos folder.
    pub fn scratch_dir(&self) -> PathBuf {
        let path = self.dir.path().join("scratch");
        std::fs::create_dir_all(&path).expect("scratch dir");
        path
    }

    /// Writes a file into the videos folder (creating subfolders).
    pub fn put_video(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.videos_dir().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("video subfolder");
        }
        std::fs::write(&path, bytes).expect("write video");
        path
    }

    /// Starts the origin on an ephemeral port, serving the videos folder.
    pub async fn start_origin(&mut self) -> &RoleHandle {
        self.start_origin_with(vcdn_origin::Config::default()).await
    }

    /// Starts the origin with a custom configuration (listen address and
    /// videos folder are set by the cluster).
    pub async fn start_origin_with(&mut self, mut config: vcdn_origin::Config) -> &RoleHandle {
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.videos_dir = self.videos_dir();
        let origin = vcdn_origin::build(&config, &self.serving)
            .await
            .expect("origin starts");
        let addr = origin.local_addr();
        self.origin
            .insert(RoleHandle::spawn(addr, |token| origin.run(token)))
    }

    /// Starts a replica of `origin_url` on an ephemeral port, caching in a
    /// folder of its own (listen address, CA and cache folder are set here).
    pub async fn start_replica(
        &self,
        origin_url: &str,
        mut config: vcdn_replica::Config,
    ) -> RoleHandle {
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.origin = origin_url.to_owned();
        config.origin_ca_file = Some(self.pki.ca_cert.clone());
        // A relative (default) cache folder gets one of its own per replica;
        // an absolute one is kept, so a test can restart a replica on it.
        if config.cache_dir.is_relative() {
            let n = self
                .replicas
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            config.cache_dir = self.dir.path().join(format!("cache-{n}"));
        }
        let replica = vcdn_replica::build(&config, &self.serving)
            .await
            .expect("replica starts");
        let addr = replica.local_addr();
        RoleHandle::spawn(addr, |token| replica.run(token))
    }

    /// A test origin (see [`origin::TestOrigin`]) with the cluster's certificate.
    pub async fn start_test_origin(&self) -> origin::TestOrigin {
        origin::TestOrigin::start(&self.serving).await
    }

    /// A folder inside the cluster's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The origin's base URL.
    pub fn origin_url(&self) -> String {
        self.origin.as_ref().expect("origin started").url()
    }

    /// A client that trusts the cluster's CA and speaks h2 or HTTP/1.1 by ALPN.
    pub fn client(&self) -> reqwest::Client {
        client_trusting(&self.pki.ca_cert, Protocol::Auto)
    }

    /// A client that only speaks HTTP/1.1.
    pub fn http1_client(&self) -> reqwest::Client {
        client_trusting(&self.pki.ca_cert, Protocol::Http1)
    }
}

impl Default for TestCluster {
    fn default() -> Self {
        TestCluster::new()
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    Auto,
    Http1,
}

/// A reqwest client trusting only the CA in `ca_file`.
pub fn client_trusting(ca_file: &Path, protocol: Protocol) -> reqwest::Client {
    let pem = std::fs::read(ca_file).expect("CA file");
    let ca = reqwest::Certificate::from_pem(&pem).expect("CA pem");
    let builder = reqwest::Client::builder()
        .tls_certs_only([ca])
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    let builder = match protocol {
        Protocol::Auto => builder,
        Protocol::Http1 => builder.http1_only(),
    };
    builder.build().expect("client")
}

/// Hex sha256 of some bytes, for comparing bodies.
pub fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic pseudo-random bytes, so every position of a test file is
/// distinguishable from every other.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&word[..take]);
    }
    out
}
