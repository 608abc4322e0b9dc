//! `vcdn`: one binary for every role of the video CDN.
//!
//! This crate only parses the command line, sets up logging, loads and
//! validates `vcdn.toml`, and hands off to a role's library crate. `up` runs
//! the whole demo cluster in one process.

mod config;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::FileConfig;

#[derive(Parser, Debug)]
#[command(name = "vcdn", version, about = "A content delivery network for video")]
struct Cli {
    /// Configuration file (TOML). Defaults to ./vcdn.toml when it exists.
    #[arg(long, global = true, env = "VCDN_CONFIG")]
    config: Option<PathBuf>,

    /// Parse and validate the configuration, then exit.
    #[arg(long, global = true)]
    check: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the whole demo cluster on one machine.
    Up(TlsArgs),
    /// Serve the master files of a folder.
    Origin(OriginArgs),
    /// Run an edge cache in front of an origin.
    Replica(ReplicaArgs),
    /// Route viewers to healthy replicas.
    Controller(ControllerArgs),
    /// Serve the viewer's page and the cluster dashboard.
    Web(WebArgs),
    /// Create the local CA and a server certificate.
    Cert(CertArgs),
}

#[derive(Args, Debug, Default)]
struct TlsArgs {
    /// Server certificate chain (PEM). Without it vcdn makes one under --cert-dir.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key of --cert (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Folder of the generated local CA and certificate.
    #[arg(long)]
    cert_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct OriginArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 or 0.0.0.0:8080.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Folder of the files to serve.
    #[arg(long)]
    videos: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Args, Debug)]
struct ReplicaArgs {
    /// Address to listen on, e.g. 127.0.0.1:8081.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Base URL of the origin, e.g. https://origin.example:8080.
    #[arg(long)]
    origin: Option<String>,
    /// CA certificates (PEM) to trust for the origin; defaults to the local CA.
    #[arg(long)]
    origin_ca: Option<PathBuf>,
    /// Folder of the disk cache.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Name shown in X-Served-By and Cache-Status.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Args, Debug)]
struct ControllerArgs {
    /// Address to listen on, e.g. 127.0.0.1:8084.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Base URL of a replica (repeatable); replaces `controller.replicas`.
    #[arg(long = "replica", value_name = "URL")]
    replicas: Vec<String>,
    /// Base URL of the origin (catalog, and fallback when no replica is healthy).
    #[arg(long)]
    origin: Option<String>,
    /// CA certificates (PEM) to trust for replicas and origin; defaults to the local CA.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// round-robin, consistent-hash or least-loaded.
    #[arg(long)]
    strategy: Option<vcdn_controller::Strategy>,
    /// redirect (302 to the replica) or proxy (stream through the controller).
    #[arg(long)]
    mode: Option<vcdn_controller::Mode>,
    /// Answer 503 instead of sending viewers to the origin when no replica is healthy.
    #[arg(long)]
    no_origin_fallback: bool,
    /// Bearer token of the admin API (off without one); prefer the environment variable.
    #[arg(long, env = "VCDN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Bearer token for the replicas' admin API; defaults to --admin-token.
    #[arg(long, env = "VCDN_REPLICA_ADMIN_TOKEN", hide_env_values = true)]
    replica_admin_token: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Args, Debug)]
struct WebArgs {
    /// Address to listen on, e.g. 127.0.0.1:8000 or 0.0.0.0:8000.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// The controller's base URL as browsers reach it, e.g. https://cdn.example.net:8084.
    #[arg(long)]
    controller: Option<String>,
    /// Title shown in the page's header and the browser's tab.
    #[arg(long)]
    title: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Args, Debug)]
struct CertArgs {
    /// Folder for the CA and certificate.
    #[arg(long, default_value = "cert")]
    dir: PathBuf,
    /// Extra DNS name or IP address for the certificate (repeatable), for
    /// clusters spread over several hosts.
    #[arg(long = "name", value_name = "NAME_OR_IP")]
    names: Vec<String>,
}

fn main() -> ExitCode {
    vcdn_http::tls::install_default_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vcdn: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = FileConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Cert(args) => {
            let pki = vcdn_http::tls::LocalPki::issue(&args.dir, &args.names)
                .context("issuing the certificate")?;
            println!("CA certificate (trust this): {}", pki.ca_cert.display());
            println!("server certificate:          {}", pki.cert.display());
            println!("server key:                  {}", pki.key.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Up(tls) => {
            apply_tls(&mut config, tls);
            config.validate()?;
            if cli.check {
                println!("configuration is valid");
                return Ok(ExitCode::SUCCESS);
            }
            runtime()?.block_on(up::run(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Origin(args) => {
            if let Some(listen) = args.listen {
                config.origin.listen = listen;
            }
            if let Some(videos) = args.videos {
                config.origin.videos_dir = videos;
            }
            apply_tls(&mut config, args.tls);
            config.validate()?;
            if cli.check {
                println!("configuration is valid");
                return Ok(ExitCode::SUCCESS);
            }
            runtime()?.block_on(up::origin_only(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replica(args) => {
            let replica = &mut config.replica;
            if let Some(listen) = args.listen {
                replica.listen = listen;
            }
            if let Some(origin) = args.origin {
                replica.origin = origin;
            }
            if let Some(ca) = args.origin_ca {
                replica.origin_ca_file = Some(ca);
            }
            if let Some(dir) = args.cache_dir {
                replica.cache_dir = dir;
            }
            if let Some(name) = args.name {
                replica.name = Some(name);
            }
            apply_tls(&mut config, args.tls);
            config.validate()?;
            if cli.check {
                println!("configuration is valid");
                return Ok(ExitCode::SUCCESS);
            }
            runtime()?.block_on(up::replica_only(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Controller(args) => {
            let controller = &mut config.controller;
            if let Some(listen) = args.listen {
                controller.listen = listen;
            }
            if !args.replicas.is_empty() {
                controller.replicas = args.replicas;
            }
            if let Some(origin) = args.origin {
                controller.origin = origin;
            }
            if let Some(ca) = args.ca {
                controller.ca_file = Some(ca);
            }
            if let Some(strategy) = args.strategy {
                controller.strategy = strategy;
            }
            if let Some(mode) = args.mode {
                controller.mode = mode;
            }
            if args.no_origin_fallback {
                controller.fallback_to_origin = false;
            }
            if let Some(token) = args.admin_token {
                controller.admin_token = Some(vcdn_controller::Token::new(token));
            }
            if let Some(token) = args.replica_admin_token {
                controller.replica_admin_token = Some(vcdn_controller::Token::new(token));
            }
            apply_tls(&mut config, args.tls);
            config.validate()?;
            if cli.check {
                println!("configuration is valid");
                return Ok(ExitCode::SUCCESS);
            }
            runtime()?.block_on(up::controller_only(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Web(args) => {
            if let Some(listen) = args.listen {
                config.web.listen = listen;
            }
            if let Some(controller) = args.controller {
                config.web.controller = Some(controller);
            }
            if let Some(title) = args.title {
                config.web.title = title;
            }
            apply_tls(&mut config, args.tls);
            config.validate()?;
            if cli.check {
                println!("configuration is valid");
                return Ok(ExitCode::SUCCESS);
            }
            runtime()?.block_on(up::web_only(config))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn apply_tls(config: &mut FileConfig, args: TlsArgs) {
    if args.cert.is_some() {
        config.tls.cert = args.cert;
        config.tls.key = args.key;
    }
    if let Some(dir) = args.cert_dir {
        config.tls.cert_dir = dir;
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
