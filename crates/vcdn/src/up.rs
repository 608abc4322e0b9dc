//! Starting roles: one alone (`vcdn origin`) or the demo cluster (`vcdn up`).

use std::path::Path;

use anyhow::Context;
use vcdn_http::Serving;

use crate::config::FileConfig;

/// The sample video bundled into the binary (made by
/// `assets/sample/make-sample.sh`), so `vcdn up` has something to play.
const SAMPLE_NAME: &str = "sample.mp4";
const SAMPLE: &[u8] = include_bytes!("../../../assets/sample/sample.mp4");

/// Runs the demo cluster until SIGINT or SIGTERM. Roles not built yet are
/// skipped; today that is everything but the origin.
pub async fn run(config: FileConfig) -> anyhow::Result<()> {
    if config.up.install_sample {
        install_sample(&config.origin.videos_dir)?;
    }
    origin_only(config).await
}

/// Runs the origin alone until SIGINT or SIGTERM.
pub async fn origin_only(config: FileConfig) -> anyhow::Result<()> {
    let serving = serving(&config)?;
    let shutdown = vcdn_http::shutdown::on_signal();
    let origin = vcdn_origin::build(&config.origin, &serving)
        .await
        .context("starting the origin")?;
    println!(
        "origin   https://localhost:{}/  (catalog: /api/videos, files from {})",
        origin.local_addr().port(),
        config.origin.videos_dir.display()
    );
    if let Some(ca) = config.tls.ca_file() {
        println!(
            "trust    {}  (e.g. curl --cacert {} ...)",
            ca.display(),
            ca.display()
        );
    }
    origin.run(shutdown).await.context("running the origin")?;
    Ok(())
}

/// Loads (or on first start creates) the TLS identity every listener shares.
fn serving(config: &FileConfig) -> anyhow::Result<Serving> {
    let identity = config.tls.load().context("loading the TLS certificate")?;
    Ok(Serving {
        tls: identity.server_config()?,
        limits: config.server.clone(),
    })
}

/// Writes the sample video into `dir` when the folder has no files at all.
fn install_sample(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let empty = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .all(|e| e.file_name().to_string_lossy().starts_with('.'));
    if empty {
        let target = dir.join(SAMPLE_NAME);
        std::fs::write(&target, SAMPLE).with_context(|| format!("writing {}", target.display()))?;
        tracing::info!(path = %target.display(), "videos folder was empty: added the sample video");
    }
    Ok(())
}
