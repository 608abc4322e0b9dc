//! `vcdn.toml`: one file configures every role of a process.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

/// The whole configuration file. Every section and field is optional; the
/// defaults are the prototype's ports on 127.0.0.1.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Certificates for every listener.
    pub tls: vcdn_http::tls::Config,
    /// Timeouts and limits for every listener.
    pub server: vcdn_http::Limits,
    pub origin: vcdn_origin::Config,
    /// The replica; `vcdn up` runs `up.replicas` of them on consecutive ports.
    pub replica: vcdn_replica::Config,
    /// The controller; under `vcdn up` its replicas and origin are the ones
    /// `up` starts.
    pub controller: vcdn_controller::Config,
    /// The viewer's page and dashboard; under `vcdn up` it points browsers
    /// at the controller `up` starts, unless `web.controller` is set.
    pub web: vcdn_web::Config,
    pub up: UpConfig,
}

/// The `[up]` section: how `vcdn up` prepares the demo.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpConfig {
    /// Put the bundled sample video into an empty videos folder.
    pub install_sample: bool,
    /// Replicas to run, on `replica.listen`'s port and the ones after it.
    pub replicas: u16,
}

impl Default for UpConfig {
    fn default() -> Self {
        UpConfig {
            install_sample: true,
            replicas: 3,
        }
    }
}

/// The default file name, read from the working directory when present.
const DEFAULT_FILE: &str = "vcdn.toml";

impl FileConfig {
    /// Reads `path`, or `./vcdn.toml` when no path is given and it exists,
    /// or the defaults.
    pub fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
        let path = match path {
            Some(p) => p,
            None if Path::new(DEFAULT_FILE).exists() => Path::new(DEFAULT_FILE),
            None => return Ok(FileConfig::default()),
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.tls.validate()?;
        self.server.validate()?;
        self.origin.validate()?;
        self.replica.validate()?;
        self.controller.validate()?;
        self.web.validate()?;
        if self.up.replicas == 0 || self.up.replicas > 64 {
            anyhow::bail!("up.replicas must be between 1 and 64");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vcdn.toml");
        let config = FileConfig::load(Some(&path)).unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = toml::from_str::<FileConfig>("[origin]\nlisten_port = 1\n").unwrap_err();
        assert!(err.to_string().contains("listen_port"), "{err}");
    }

    #[test]
    fn controller_section_is_read() {
        let config: FileConfig = toml::from_str(
            "[controller]\nstrategy = \"consistent-hash\"\nmode = \"proxy\"\nreplicas = [\"https://edge1.example:8081\"]\n",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(
            config.controller.strategy,
            vcdn_controller::Strategy::ConsistentHash
        );
        assert_eq!(config.controller.mode, vcdn_controller::Mode::Proxy);
        assert!(toml::from_str::<FileConfig>("[controller]\nstrategy = \"random\"\n").is_err());
    }

    #[test]
    fn web_section_is_read() {
        let config: FileConfig = toml::from_str(
            "[web]\nlisten = \"0.0.0.0:8000\"\ncontroller = \"https://cdn.example.net:8084\"\ntitle = \"Acme\"\n",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.web.controller_url(), "https://cdn.example.net:8084");
        assert_eq!(config.web.title, "Acme");
        let bad: FileConfig = toml::from_str("[web]\ncontroller = \"localhost:8084\"\n").unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn bad_values_fail_validation() {
        let config: FileConfig = toml::from_str("[server]\nmax_header_bytes = 10\n").unwrap();
        assert!(config.validate().is_err());
    }
}
