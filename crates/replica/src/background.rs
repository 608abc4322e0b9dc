//! A replica's background work: per-second rates, the free-disk guard, and
//! the heartbeat that announces it to a controller.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use vcdn_http::CancellationToken;

use crate::Config;
use crate::store::Store;

const TICK: Duration = Duration::from_secs(1);

pub(crate) async fn run(
    store: Arc<Store>,
    config: Config,
    name: String,
    url: String,
    shutdown: CancellationToken,
) {
    let heartbeat = config.controller.as_ref().and_then(|controller| {
        match heartbeat_client(config.origin_ca_file.as_deref()) {
            Ok(client) => Some((
                client,
                format!("{}/admin/heartbeat", controller.trim_end_matches('/')),
            )),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the heartbeat client; not announcing");
                None
            }
        }
    });
    let mut last = (0, 0);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        store.stats().sample(&mut last, TICK);
        check_disk(&store, &config);
        if let Some((client, endpoint)) = &heartbeat {
            let body = serde_json::json!({ "url": url, "name": name }).to_string();
            let mut request = client
                .post(endpoint)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body);
            if let Some(token) = &config.controller_token {
                request = request.bearer_auth(token);
            }
            if let Err(e) = request.send().await.and_then(|r| r.error_for_status()) {
                tracing::debug!(error = %e, "heartbeat to the controller failed");
            }
        }
    }
}

pub(crate) fn check_disk(store: &Store, config: &Config) {
    let free = free_bytes(&config.cache_dir);
    let low = free.is_some_and(|free| free < config.min_free_disk_bytes);
    let was = store.low_disk.swap(low, Ordering::Relaxed);
    store.stats().low_disk.set(i64::from(low));
    if low != was {
        if low {
            tracing::warn!(free = ?free, minimum = config.min_free_disk_bytes, "disk nearly full: passing uncached content through");
        } else {
            tracing::info!("disk space recovered: caching again");
        }
    }
}

fn free_bytes(path: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

fn heartbeat_client(ca_file: Option<&Path>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy();
    if let Some(ca_file) = ca_file {
        let pem = std::fs::read(ca_file).map_err(|e| e.to_string())?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())?;
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| e.to_string())
}
