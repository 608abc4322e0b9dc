//! Certificates and rustls configuration.
//!
//! Every vcdn listener speaks TLS. An operator either brings a certificate
//! (`--cert/--key`) or lets vcdn make a small local PKI under a folder
//! (`cert/` by default): a CA that stays on the machine, and a server
//! certificate signed by it for `localhost`, `127.0.0.1`, `::1` and any extra
//! names. Clients (browsers, curl, other vcdn roles) then trust `ca.pem` once,
//! and certificates can be re-issued for new hosts without re-trusting.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::Error;

/// File names inside a certificate folder.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

/// Where a listener's certificate comes from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The operator's own certificate chain (PEM). Used with `key`.
    pub cert: Option<PathBuf>,
    /// The operator's own private key (PEM). Used with `cert`.
    pub key: Option<PathBuf>,
    /// Folder for the generated local CA and server certificate, used when
    /// `cert`/`key` are not given. Created on first start and reused after.
    pub cert_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cert: None,
            key: None,
            cert_dir: PathBuf::from("cert"),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), Error> {
        match (&self.cert, &self.key) {
            (Some(_), None) | (None, Some(_)) => Err(Error::Config(
                "tls: `cert` and `key` must be given together".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The CA file clients should trust, when vcdn made the certificate.
    pub fn ca_file(&self) -> Option<PathBuf> {
        match self.cert {
            Some(_) => None,
            None => Some(self.cert_dir.join(CA_CERT_FILE)),
        }
    }

    /// Loads the configured certificate, generating the local PKI on first use.
    pub fn load(&self) -> Result<Identity, Error> {
        self.validate()?;
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Identity::from_files(cert, key),
            _ => {
                let pki = LocalPki::ensure(&self.cert_dir, &[])?;
                Identity::from_files(&pki.cert, &pki.key)
            }
        }
    }
}

/// A certificate chain and its private key, ready for rustls.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    pub fn from_files(cert: &Path, key: &Path) -> Result<Identity, Error> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                Error::Tls(format!("reading certificates from {}: {e}", cert.display()))
            })?;
        if chain.is_empty() {
            return Err(Error::Tls(format!("no certificate in {}", cert.display())));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| Error::Tls(format!("reading private key from {}: {e}", key.display())))?;
        Ok(Identity { chain, key })
    }

    /// A rustls server configuration offering HTTP/2 and HTTP/1.1 by ALPN.
    pub fn server_config(self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.chain, self.key)
            .map_err(|e| Error::Tls(format!("certificate and key do not fit: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The one crypto provider vcdn uses. Installing it as the process default
/// keeps crates that look the provider up (reqwest) on ring as well.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide rustls provider; harmless if one is set.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads every certificate of a PEM file, for clients that trust a CA.
pub fn read_ca_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::Tls(format!(
                "reading CA certificates from {}: {e}",
                path.display()
            ))
        })
}

/// The generated local PKI in a folder: paths of its four files.
#[derive(Debug, Clone)]
pub struct LocalPki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl LocalPki {
    fn at(dir: &Path) -> LocalPki {
        LocalPki {
            ca_cert: dir.join(CA_CERT_FILE),
            ca_key: dir.join(CA_KEY_FILE),
            cert: dir.join(CERT_FILE),
            key: dir.join(KEY_FILE),
        }
    }

    /// Makes the CA and server certificate in `dir` if they are missing, and
    /// leaves them alone otherwise. `extra_names` are added to a new server
    /// certificate's subject alternative names.
    pub fn ensure(dir: &Path, extra_names: &[String]) -> Result<LocalPki, Error> {
        let pki = LocalPki::at(dir);
        if pki.cert.exists() && pki.key.exists() {
            return Ok(pki);
        }
        Self::issue(dir, extra_names)
    }

    /// Issues a new server certificate for the default names plus
    /// `extra_names` (DNS names or IP addresses), signed by the folder's CA,
    /// which is created only if it does not exist yet.
    pub fn issue(dir: &Path, extra_names: &[String]) -> Result<LocalPki, Error> {
        let pki = LocalPki::at(dir);
        fs::create_dir_all(dir)
            .map_err(|e| Error::Tls(format!("creating {}: {e}", dir.display())))?;

        let ca_key = if pki.ca_cert.exists() && pki.ca_key.exists() {
            let pem = fs::read_to_string(&pki.ca_key)
                .map_err(|e| Error::Tls(format!("reading {}: {e}", pki.ca_key.display())))?;
            KeyPair::from_pem(&pem).map_err(|e| Error::Tls(format!("CA key: {e}")))?
        } else {
            let key = KeyPair::generate().map_err(rcgen_error)?;
            let cert = ca_params().self_signed(&key).map_err(rcgen_error)?;
            write_file(&pki.ca_key, key.serialize_pem().as_bytes(), true)?;
            write_file(&pki.ca_cert, cert.pem().as_bytes(), false)?;
            key
        };
        // The issuer is rebuilt from the same distinguished name and key as
        // the stored CA certificate, so new certificates chain to it.
        let issuer = Issuer::new(ca_params(), ca_key);

        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for name in extra_names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name("vcdn server");
        for name in &names {
            params.subject_alt_names.push(match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) if !valid_dns_name(name) => {
                    return Err(Error::Config(format!("`{name}` is not a valid DNS name")));
                }
                Err(_) => SanType::DnsName(
                    name.clone()
                        .try_into()
                        .map_err(|_| Error::Config(format!("`{name}` is not a valid DNS name")))?,
                ),
            });
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let cert = params.signed_by(&key, &issuer).map_err(rcgen_error)?;

        write_file(&pki.key, key.serialize_pem().as_bytes(), true)?;
        write_file(&pki.cert, cert.pem().as_bytes(), false)?;
        tracing::info!(
            ca = %pki.ca_cert.display(),
            names = ?names,
            "issued a server certificate; trust the CA file to connect without warnings"
        );
        Ok(pki)
    }
}

/// A host name as a certificate may carry it: dot-separated labels of
/// letters, digits and inner hyphens, optionally a leading `*.` wildcard.
fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name("vcdn local CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Ten years: this CA never leaves the operator's machines.
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    params
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "vcdn");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn rcgen_error(e: rcgen::Error) -> Error {
    Error::Tls(format!("generating certificate: {e}"))
}

/// Writes a file atomically (temp file + rename); private files get mode 0600
/// from the moment they exist.
fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| Error::Tls(format!("writing {}: {e}", path.display()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pki_is_reused_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalPki::ensure(dir.path(), &[]).unwrap();
        let cert_before = fs::read(&first.cert).unwrap();
        let second = LocalPki::ensure(dir.path(), &[]).unwrap();
        assert_eq!(cert_before, fs::read(&second.cert).unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [&first.key, &first.ca_key] {
                let mode = fs::metadata(key).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", key.display());
            }
        }
        Identity::from_files(&first.cert, &first.key)
            .unwrap()
            .server_config()
            .unwrap();
    }

    #[test]
    fn reissuing_keeps_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalPki::ensure(dir.path(), &[]).unwrap();
        let ca = fs::read(&first.ca_cert).unwrap();
        LocalPki::issue(dir.path(), &["cdn.example".into(), "10.1.2.3".into()]).unwrap();
        assert_eq!(ca, fs::read(&first.ca_cert).unwrap());
    }

    #[test]
    fn invalid_extra_name_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(LocalPki::issue(dir.path(), &["bad name!".into()]).is_err());
    }
}
