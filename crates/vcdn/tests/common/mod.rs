//! Running the real `vcdn replica` binary as a child process.
//!
//! The process is started with the test cluster's certificate and CA, an
//! empty configuration file and a scratch working directory (so it never
//! picks up the repository's `vcdn.toml`). It is ready when it prints its
//! `replica  https://localhost:<port>  (...)` line on stdout. Its stderr is
//! forwarded to the test's (captured) output. Dropping the handle kills it.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vcdn_test_support::TestCluster;

/// Lines of stdout read while looking for the ready line.
const READY_LINES: usize = 20;
/// Guards against a hang only; a healthy start takes milliseconds.
const READY_GUARD: Duration = Duration::from_secs(60);

/// A running `vcdn replica` process, killed when dropped.
pub struct ReplicaProcess {
    child: Child,
    port: u16,
}

impl ReplicaProcess {
    /// Starts `vcdn replica` in front of `origin_url`, caching in `cache_dir`,
    /// and waits until it has printed the line with its port.
    pub async fn start(cluster: &TestCluster, origin_url: &str, cache_dir: &Path) -> Self {
        let work_dir = cluster.scratch_dir();
        let config = work_dir.join("empty.toml");
        std::fs::write(&config, "").expect("empty config file");
        let cert_dir = cluster.pki.cert.parent().expect("certificate folder");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vcdn"))
            .arg("--config")
            .arg(&config)
            .arg("replica")
            .args(["--listen", "127.0.0.1:0", "--origin", origin_url])
            .arg("--origin-ca")
            .arg(&cluster.pki.ca_cert)
            .arg("--cache-dir")
            .arg(cache_dir)
            .arg("--cert-dir")
            .arg(cert_dir)
            .current_dir(&work_dir)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vcdn binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let pid = child.id();
        // From here on a failure kills the child through the guard.
        let mut process = ReplicaProcess { child, port: 0 };

        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[replica {pid}] {line}");
            }
        });
        let (ready, port) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let mut seen = Vec::new();
            let mut ready = Some(ready);
            for line in lines.by_ref().take(READY_LINES) {
                if let Some(port) = ready_port(&line) {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Ok(port));
                    }
                    break;
                }
                seen.push(line);
            }
            if let Some(ready) = ready.take() {
                let _ = ready.send(Err(seen));
                return;
            }
            // Keep draining so the child never blocks on a full pipe.
            lines.for_each(drop);
        });
        process.port = match tokio::time::timeout(READY_GUARD, port).await {
            Ok(Ok(Ok(port))) => port,
            Ok(Ok(Err(seen))) => panic!(
                "replica {pid} printed no ready line (stdout: {seen:?}; exit: {:?}; its stderr is above)",
                process.child.try_wait()
            ),
            Ok(Err(_)) => panic!("replica {pid}: stdout reader vanished"),
            Err(_) => panic!("replica {pid} printed no ready line in {READY_GUARD:?}"),
        };
        process
    }

    /// `https://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill(mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ReplicaProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// The port in `replica  https://localhost:<port>  (...)`.
fn ready_port(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("replica")?.trim_start();
    let rest = rest.strip_prefix("https://localhost:")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
