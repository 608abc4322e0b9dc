//! Starting roles: one alone (`vcdn origin`, `vcdn replica`,
//! `vcdn controller`, `vcdn web`) or the demo cluster (`vcdn up`).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use tokio::task::JoinSet;
use vcdn_http::{CancellationToken, Serving};

use crate::config::FileConfig;

/// The sample video bundled into the binary (made by
/// `assets/sample/make-sample.sh`), so `vcdn up` has something to play.
const SAMPLE_NAME: &str = "sample.mp4";
const SAMPLE: &[u8] = include_bytes!("../../../assets/sample/sample.mp4");

/// Runs the demo cluster until SIGINT or SIGTERM: the origin,
/// `up.replicas` replicas in front of it, and the controller in front of
/// them (given their real URLs), and the web page pointing browsers at
/// that controller.
pub async fn run(config: FileConfig) -> anyhow::Result<()> {
    if config.up.install_sample {
        install_sample(&config.origin.videos_dir)?;
    }
    let serving = serving(&config)?;
    let shutdown = vcdn_http::shutdown::on_signal();
    let mut roles = JoinSet::new();

    let origin = vcdn_origin::build(&config.origin, &serving)
        .await
        .context("starting the origin")?;
    println!(
        "origin   {}  (catalog: /api/videos, files from {})",
        url(origin.local_addr()),
        config.origin.videos_dir.display()
    );
    let origin_url = url(origin.local_addr());
    roles.spawn(named("origin", origin.run(shutdown.clone())));

    let mut replica_urls = Vec::new();
    for i in 0..config.up.replicas {
        let mut replica = config.replica.clone();
        let port = replica.listen.port() + i;
        replica.listen.set_port(port);
        // Each replica's optional plain listener is offset the same way, so
        // they do not all try the same port.
        if let Some(plain) = replica.plain_listen.as_mut()
            && plain.port() != 0
        {
            plain.set_port(plain.port() + i);
        }
        replica.origin = origin_url.clone();
        replica.cache_dir = config.replica.cache_dir.join(port.to_string());
        if replica.origin_ca_file.is_none() {
            replica.origin_ca_file = config.tls.ca_file();
        }
        let replica = vcdn_replica::build(&replica, &serving)
            .await
            .with_context(|| format!("starting replica {port}"))?;
        println!(
            "replica  {}  ({})",
            url(replica.local_addr()),
            replica.name()
        );
        replica_urls.push(url(replica.local_addr()));
        roles.spawn(named("replica", replica.run(shutdown.clone())));
    }

    let mut controller = config.controller.clone();
    controller.replicas = replica_urls;
    controller.origin = origin_url;
    if controller.ca_file.is_none() {
        controller.ca_file = config.tls.ca_file();
    }
    // The replicas `up` starts share `[replica]`, so purge and prefetch
    // fan-out use their admin token unless the controller names another.
    if controller.replica_admin_token.is_none()
        && let Some(token) = &config.replica.admin_token
    {
        controller.replica_admin_token = Some(vcdn_controller::Token::new(token.clone()));
    }
    let controller_config = controller;
    let controller = vcdn_controller::build(&controller_config, &serving)
        .await
        .context("starting the controller")?;
    print_controller(controller.local_addr(), &controller_config);
    let controller_url = url(controller.local_addr());
    roles.spawn(named("controller", controller.run(shutdown.clone())));

    let mut web = config.web.clone();
    if web.controller.is_none() {
        web.controller = Some(controller_url);
    }
    let web_config = web;
    let web = vcdn_web::build(&web_config, &serving)
        .await
        .context("starting the web page")?;
    print_web(web.local_addr(), &web_config);
    roles.spawn(named("web", web.run(shutdown.clone())));

    print_trust(&config);
    wait(roles, shutdown).await
}

/// Runs the web page alone until SIGINT or SIGTERM.
pub async fn web_only(config: FileConfig) -> anyhow::Result<()> {
    let serving = serving(&config)?;
    let shutdown = vcdn_http::shutdown::on_signal();
    let web = vcdn_web::build(&config.web, &serving)
        .await
        .context("starting the web page")?;
    print_web(web.local_addr(), &config.web);
    print_trust(&config);
    web.run(shutdown).await.context("running the web page")
}

fn print_web(addr: SocketAddr, config: &vcdn_web::Config) {
    println!(
        "web      {}  (open in a browser: videos, player, /dashboard; controller {})",
        url(addr),
        config.controller_url()
    );
}

/// Runs the controller alone until SIGINT or SIGTERM.
pub async fn controller_only(mut config: FileConfig) -> anyhow::Result<()> {
    let serving = serving(&config)?;
    let shutdown = vcdn_http::shutdown::on_signal();
    if config.controller.ca_file.is_none() {
        config.controller.ca_file = config.tls.ca_file();
    }
    let controller = vcdn_controller::build(&config.controller, &serving)
        .await
        .context("starting the controller")?;
    print_controller(controller.local_addr(), &config.controller);
    println!(
        "         replicas: {}",
        config.controller.replicas.join(", ")
    );
    print_trust(&config);
    controller
        .run(shutdown)
        .await
        .context("running the controller")
}

fn print_controller(addr: SocketAddr, config: &vcdn_controller::Config) {
    println!(
        "controller {}  ({}, {}; /api/cluster, /api/route/<path>, admin API {})",
        url(addr),
        config.strategy.as_str(),
        config.mode.as_str(),
        if config.admin_token.is_some() {
            "on"
        } else {
            "off"
        }
    );
}

/// Runs the origin alone until SIGINT or SIGTERM.
pub async fn origin_only(config: FileConfig) -> anyhow::Result<()> {
    let serving = serving(&config)?;
    let shutdown = vcdn_http::shutdown::on_signal();
    let origin = vcdn_origin::build(&config.origin, &serving)
        .await
        .context("starting the origin")?;
    println!(
        "origin   {}  (catalog: /api/videos, files from {})",
        url(origin.local_addr()),
        config.origin.videos_dir.display()
    );
    print_trust(&config);
    origin.run(shutdown).await.context("running the origin")
}

/// Runs one replica until SIGINT or SIGTERM.
pub async fn replica_only(mut config: FileConfig) -> anyhow::Result<()> {
    let serving = serving(&config)?;
    let shutdown = vcdn_http::shutdown::on_signal();
    if config.replica.origin_ca_file.is_none() {
        config.replica.origin_ca_file = config.tls.ca_file();
    }
    let replica = vcdn_replica::build(&config.replica, &serving)
        .await
        .context("starting the replica")?;
    println!(
        "replica  {}  ({}, origin {})",
        url(replica.local_addr()),
        replica.name(),
        config.replica.origin
    );
    print_trust(&config);
    replica.run(shutdown).await.context("running the replica")
}

async fn named<E: std::error::Error + Send + Sync + 'static>(
    role: &'static str,
    run: impl Future<Output = Result<(), E>>,
) -> anyhow::Result<()> {
    run.await.with_context(|| format!("running the {role}"))
}

/// Waits for every role; if one fails, stops the others.
async fn wait(
    mut roles: JoinSet<anyhow::Result<()>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut first_error = None;
    while let Some(done) = roles.join_next().await {
        let result = done.context("a role panicked").and_then(|r| r);
        if let Err(e) = result {
            shutdown.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn url(addr: SocketAddr) -> String {
    let host = if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        "localhost".to_owned()
    } else {
        addr.ip().to_string()
    };
    format!("https://{host}:{}", addr.port())
}

fn print_trust(config: &FileConfig) {
    if let Some(ca) = config.tls.ca_file() {
        println!(
            "trust    {}  (e.g. curl --cacert {} ...)",
            ca.display(),
            ca.display()
        );
    }
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
