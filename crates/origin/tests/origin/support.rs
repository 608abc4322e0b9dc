//! Shared helpers: starting an origin over some files, fetching a response
//! whole, and a raw HTTP/1.1-over-TLS client for request paths that reqwest
//! would normalise before sending.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use vcdn_test_support::TestCluster;

/// The bundled ten-second sample video.
pub const SAMPLE_MP4: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../assets/sample/sample.mp4"
));

/// A cluster whose videos folder holds `files`, with the origin running.
pub async fn origin_with(files: &[(&str, &[u8])]) -> TestCluster {
    let mut cluster = TestCluster::new();
    for (path, bytes) in files {
        cluster.put_video(path, bytes);
    }
    cluster.start_origin().await;
    cluster
}

/// The URL of `path` (which starts with `/`) on the cluster's origin.
pub fn url(cluster: &TestCluster, path: &str) -> String {
    format!("{}{path}", cluster.origin_url())
}

/// Both clients with the protocol each must end up speaking: h2 chosen by
/// ALPN, and HTTP/1.1 only.
pub fn clients(cluster: &TestCluster) -> [(Client, Version); 2] {
    [
        (cluster.client(), Version::HTTP_2),
        (cluster.http1_client(), Version::HTTP_11),
    ]
}

/// A response read to its end.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Fetched {
    /// A header's value as text; panics when it is missing.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("response has no {name} header: {self:?}"))
            .to_str()
            .expect("header value is text")
    }

    /// A header's value as text, if present.
    pub fn maybe_header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("text"))
    }

    /// The comma-separated items of a header, lowercased and trimmed.
    pub fn header_list(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.to_str().expect("text").split(','))
            .map(|item| item.trim().to_ascii_lowercase())
            .filter(|item| !item.is_empty())
            .collect()
    }

    /// Content-Length parsed as a number.
    pub fn content_length(&self) -> u64 {
        self.header("content-length")
            .parse()
            .expect("numeric content-length")
    }
}

/// Sends a request and reads the whole response.
pub async fn fetch(request: RequestBuilder) -> Fetched {
    let response = request.send().await.expect("request succeeds");
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body reads").to_vec();
    Fetched {
        status,
        version,
        headers,
        body,
    }
}

/// GET `path` with extra headers.
pub async fn get(
    client: &Client,
    cluster: &TestCluster,
    path: &str,
    headers: &[(&str, &str)],
) -> Fetched {
    let mut request = client.get(url(cluster, path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    fetch(request).await
}

/// Whether any 8-byte window of `body` occurs in `file`: with
/// [`vcdn_test_support::pattern`] contents that means file bytes were sent.
pub fn leaks_file_bytes(body: &[u8], file: &[u8]) -> bool {
    const WINDOW: usize = 8;
    if body.len() < WINDOW {
        return !body.is_empty() && contains(file, body);
    }
    body.windows(WINDOW).any(|w| contains(file, w))
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Most bytes the raw client reads from one response.
const RAW_RESPONSE_LIMIT: usize = 4 * 1024 * 1024;

/// A response as the raw client saw it on the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Every byte received: status line, headers and body.
    pub raw: Vec<u8>,
}

impl RawResponse {
    /// The bytes after the head (still transfer-coded, if chunked).
    pub fn body(&self) -> &[u8] {
        let end = self
            .raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("response has a complete head");
        &self.raw[end + 4..]
    }
}

/// Opens a TLS connection (HTTP/1.1 by ALPN, trusting the cluster's CA),
/// writes `request` as given and reads until the server closes (bounded).
pub async fn raw_exchange(cluster: &TestCluster, request: &[u8]) -> Vec<u8> {
    let addr = cluster.origin.as_ref().expect("origin started").addr;
    let mut roots = rustls::RootCertStore::empty();
    for cert in vcdn_http::tls::read_ca_certs(&cluster.pki.ca_cert).expect("CA certificate") {
        roots.add(cert).expect("CA certificate is usable");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(vcdn_http::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1".to_owned()).expect("name");
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.expect("connect to origin");
        let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
        tls.write_all(request).await.expect("send request");
        tls.flush().await.expect("flush request");
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        while raw.len() < RAW_RESPONSE_LIMIT {
            match tls.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                // A peer closing without close_notify after the response.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("reading the response: {e}"),
            }
        }
        raw
    };
    // A guard against a hung test, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .expect("the server answers or closes the connection")
}

/// Sends `GET <raw_path> HTTP/1.1` exactly as given, over TLS trusting the
/// cluster's CA, and reads the response until the server closes.
///
/// reqwest (through `url`) resolves `.` and `..` segments before sending,
/// so path-escape attempts need this client to reach the server intact.
pub async fn raw_get(cluster: &TestCluster, raw_path: &str) -> RawResponse {
    let request =
        format!("GET {raw_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let raw = raw_exchange(cluster, request.as_bytes()).await;
    let line_end = raw
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or_else(|| panic!("no status line in response to {raw_path}: {raw:?}"));
    let line = std::str::from_utf8(&raw[..line_end]).expect("status line is text");
    let mut parts = line.split(' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {line:?}");
    let status = parts
        .next()
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    RawResponse { status, raw }
}
