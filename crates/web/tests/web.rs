//! The web role over real HTTPS: the page shell on every client-side route,
//! the page's configuration, the embedded files and their validators.
//! (The page itself is exercised in a real browser by `tests/browser`.)

use std::net::SocketAddr;

use vcdn_http::CancellationToken;
use vcdn_test_support::TestCluster;

struct Running {
    base: String,
    client: reqwest::Client,
    shutdown: CancellationToken,
    _cluster: TestCluster,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(config: vcdn_web::Config) -> Running {
    let cluster = TestCluster::new();
    let config = vcdn_web::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..config
    };
    let web = vcdn_web::build(&config, &cluster.serving)
        .await
        .expect("web role starts");
    let base = format!("https://localhost:{}", web.local_addr().port());
    let shutdown = CancellationToken::new();
    tokio::spawn(web.run(shutdown.clone()));
    Running {
        base,
        client: cluster.client(),
        shutdown,
        _cluster: cluster,
    }
}

async fn get(running: &Running, path: &str) -> reqwest::Response {
    running
        .client
        .get(format!("{}{path}", running.base))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn every_page_route_serves_the_shell_with_the_title() {
    let running = start(vcdn_web::Config {
        title: "Acme <Video>".into(),
        ..Default::default()
    })
    .await;
    for path in [
        "/",
        "/dashboard",
        "/watch/sample.mp4",
        "/watch/show/a%20b.mp4?t=5",
    ] {
        let response = get(&running, path).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        // CORS is on for every role, the web role too.
        assert_eq!(headers["access-control-allow-origin"], "*");
        let html = response.text().await.unwrap();
        assert!(html.contains("<title>Acme &lt;Video&gt;</title>"), "{path}");
        assert!(html.contains("/assets/app.js"));
    }
}

#[tokio::test]
async fn config_json_tells_the_page_where_the_controller_is() {
    let running = start(vcdn_web::Config {
        controller: Some("https://cdn.example.net:8084/".into()),
        ..Default::default()
    })
    .await;
    let response = get(&running, "/config.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["controller"], "https://cdn.example.net:8084");
    assert_eq!(json["title"], "vcdn");
}

#[tokio::test]
async fn assets_are_served_with_types_and_revalidate_with_304() {
    let running = start(vcdn_web::Config::default()).await;
    for (path, content_type) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/player.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let response = get(&running, path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], content_type);
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let etag = response.headers()["etag"].clone();
        let again = running
            .client
            .get(format!("{}{path}", running.base))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
}

#[tokio::test]
async fn unknown_paths_are_404_not_the_page() {
    let running = start(vcdn_web::Config::default()).await;
    for path in [
        "/assets/missing.js",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/src/lib.rs",
        "/index.html",
        "/api/videos",
        "/watch",
    ] {
        assert_eq!(get(&running, path).await.status(), 404, "{path}");
    }
    let health: serde_json::Value = get(&running, "/healthz").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["role"], "web");
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let running = start(vcdn_web::Config::default()).await;
    let get_len = get(&running, "/assets/style.css")
        .await
        .bytes()
        .await
        .unwrap()
        .len();
    let head = running
        .client
        .head(format!("{}/assets/style.css", running.base))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        get_len.to_string()
    );
}
