//! The embedded web client.
//!
//! The browser client is plain HTML, CSS and JavaScript ES modules (no build step) kept in
//! `chat-server/web/` and compiled into the binary with `rust-embed`, debug builds included
//! (`debug-embed`): every binary is self-contained, so an image of a debug build serves the
//! client too. Edits to the client need a rebuild of this crate.
//! It is served on the same origin as `/api`, so the `fullslack_token` cookie and the
//! WebSocket at `/api/ws` work without CORS.
//!
//! Routes (merged into the server's router with `.merge(web::routes())`):
//!
//! - `GET /` and `GET /index.html`: the application shell. `Cache-Control: no-cache` (always
//!   revalidated), a strict `Content-Security-Policy` (no inline script or style anywhere in
//!   the client), and every `/assets/…` reference rewritten to `/assets/…?v=<hash>` so that
//!   a new build busts the cache of the entry points.
//! - `GET /assets/{*path}`: static files with the content type from their extension. Each has
//!   a strong `ETag` made from the SHA-256 that `rust-embed` computes at build time;
//!   `If-None-Match` answers `304 Not Modified`. A request whose `?v=` matches the file's hash
//!   is cached for a year (`immutable`); without it (ES modules imported by other modules)
//!   the file is `no-cache`, i.e. revalidated with a cheap 304.
//!
//! Every answer carries `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.

use std::borrow::Cow;

use axum::{
    body::Body,
    extract::Path,
    http::{header, HeaderMap, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use rust_embed::RustEmbed;

/// The Content-Security-Policy of every HTML page of the client.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
base-uri 'none'; form-action 'self'";

/// `Cache-Control` for an asset requested with its current `?v=` hash.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

#[derive(RustEmbed)]
#[folder = "web/"]
struct Assets;

/// The web client's routes: `/`, `/index.html` and `/assets/{*path}`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{*path}", get(asset))
}

/// Lower-case hex of the first `n` bytes.
fn hex(bytes: &[u8], n: usize) -> String {
    bytes.iter().take(n).map(|b| format!("{b:02x}")).collect()
}

/// The version tag of an embedded file (first 8 bytes of its SHA-256, in hex); `path` is
/// relative to `web/`.
fn version_of(path: &str) -> Option<String> {
    Assets::get(path).map(|f| hex(&f.metadata.sha256_hash(), 8))
}

/// Content type by extension (with a charset for text), falling back to `mime_guess`.
fn content_type(path: &str, guessed: &str) -> String {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
        "html" => "text/html; charset=utf-8".into(),
        "css" => "text/css; charset=utf-8".into(),
        "js" | "mjs" => "text/javascript; charset=utf-8".into(),
        "json" | "webmanifest" => "application/json".into(),
        "svg" => "image/svg+xml".into(),
        "png" => "image/png".into(),
        "ico" => "image/x-icon".into(),
        "txt" => "text/plain; charset=utf-8".into(),
        _ => guessed.to_string(),
    }
}

/// Whether `If-None-Match` (a list of entity tags, possibly weak, or `*`) matches `etag`.
fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// Headers every answer of the web client carries.
fn base_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// A `200` with `body`, or a `304` when `If-None-Match` matches `etag`.
fn conditional(
    req: &HeaderMap,
    etag: &str,
    content_type: &str,
    cache_control: &'static str,
    html: bool,
    body: Cow<'static, [u8]>,
) -> Response {
    let not_modified = etag_matches(req, etag);
    let mut res = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(body))
    };
    let h = res.headers_mut();
    base_headers(h);
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    if !not_modified {
        if let Ok(v) = HeaderValue::from_str(content_type) {
            h.insert(header::CONTENT_TYPE, v);
        }
    }
    if html {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    res
}

fn not_found() -> Response {
    let mut res = (StatusCode::NOT_FOUND, "not found\n").into_response();
    base_headers(res.headers_mut());
    res
}

/// `index.html` with every `"/assets/PATH"` reference turned into `"/assets/PATH?v=HASH"`,
/// and its ETag (its own hash combined with those of the files it references).
fn rendered_index() -> Option<(String, String)> {
    let file = Assets::get("index.html")?;
    let src = String::from_utf8_lossy(&file.data);
    let mut out = String::with_capacity(src.len() + 256);
    let mut tag = hex(&file.metadata.sha256_hash(), 8);
    let mut rest: &str = &src;
    const MARK: &str = "\"/assets/";
    while let Some(i) = rest.find(MARK) {
        let (before, after) = rest.split_at(i + MARK.len());
        out.push_str(before);
        let end = after.find('"').unwrap_or(after.len());
        let path = &after[..end];
        out.push_str(path);
        if !path.contains('?') {
            if let Some(v) = version_of(&format!("assets/{path}")) {
                out.push_str("?v=");
                out.push_str(&v);
                tag.push_str(&v[..4]);
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    Some((out, format!("\"{tag}\"")))
}

async fn index(headers: HeaderMap) -> Response {
    match rendered_index() {
        Some((body, etag)) => conditional(
            &headers,
            &etag,
            "text/html; charset=utf-8",
            "no-cache",
            true,
            Cow::Owned(body.into_bytes()),
        ),
        None => not_found(),
    }
}

async fn asset(Path(path): Path<String>, uri: Uri, headers: HeaderMap) -> Response {
    if path
        .split(['/', '\\'])
        .any(|seg| seg == ".." || seg.is_empty())
    {
        return not_found();
    }
    let Some(file) = Assets::get(&format!("assets/{path}")) else {
        return not_found();
    };
    let hash = file.metadata.sha256_hash();
    let etag = format!("\"{}\"", hex(&hash, 32));
    let version = hex(&hash, 8);
    let pinned = uri
        .query()
        .unwrap_or("")
        .split('&')
        .any(|kv| kv.strip_prefix("v=") == Some(version.as_str()));
    let ct = content_type(&path, file.metadata.mimetype());
    let html = ct.starts_with("text/html");
    conditional(
        &headers,
        &etag,
        &ct,
        if pinned { IMMUTABLE } else { "no-cache" },
        html,
        file.data,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `routes()` on a loopback port; returns its base URL.
    async fn serve() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, routes::<()>()).await.unwrap();
        });
        format!("http://{addr}")
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().build().unwrap()
    }

    #[tokio::test]
    async fn index_has_security_headers_and_no_cache() {
        let base = serve().await;
        let res = client().get(format!("{base}/")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let h = res.headers();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(h["content-security-policy"], CONTENT_SECURITY_POLICY);
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(h.contains_key("etag"));
        let body = res.text().await.unwrap();
        assert!(body.contains("<!doctype html>"));
        // Entry points are pinned to their hash; no inline script or style.
        assert!(body.contains("/assets/app.css?v="), "{body}");
        assert!(body.contains("/assets/js/app.js?v="), "{body}");
        assert!(!body.contains("<style"));
        assert!(!body.contains("style=\""));
        assert!(!body.contains("onclick"));
        for script in body.split("<script").skip(1) {
            assert!(script.trim_start().starts_with("type=\"module\" src="));
        }
    }

    #[tokio::test]
    async fn index_etag_gives_304() {
        let base = serve().await;
        let c = client();
        let res = c.get(format!("{base}/")).send().await.unwrap();
        let etag = res.headers()["etag"].to_str().unwrap().to_string();
        let res = c
            .get(format!("{base}/"))
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 304);
        assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
        assert_eq!(res.headers()["cache-control"], "no-cache");
        assert!(res.bytes().await.unwrap().is_empty());
        let res = c
            .get(format!("{base}/"))
            .header("If-None-Match", "\"something-else\", W/\"nope\"")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    #[tokio::test]
    async fn assets_have_types_etags_and_caching() {
        let base = serve().await;
        let c = client();
        for (path, ct) in [
            ("js/app.js", "text/javascript; charset=utf-8"),
            ("app.css", "text/css; charset=utf-8"),
            ("favicon.svg", "image/svg+xml"),
        ] {
            let res = c.get(format!("{base}/assets/{path}")).send().await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            let h = res.headers().clone();
            assert_eq!(h["content-type"], ct, "{path}");
            assert_eq!(h["cache-control"], "no-cache", "{path}");
            assert_eq!(h["x-content-type-options"], "nosniff");
            let etag = h["etag"].to_str().unwrap().to_string();
            // Strong ETag: the full SHA-256 in hex, quoted.
            assert_eq!(etag.len(), 66, "{etag}");
            let res = c
                .get(format!("{base}/assets/{path}"))
                .header("If-None-Match", format!("W/{etag}"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 304, "{path}");
            // The hash-pinned URL is cacheable for a year.
            let v = &etag[1..17];
            let res = c
                .get(format!("{base}/assets/{path}?v={v}"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.headers()["cache-control"], IMMUTABLE, "{path}");
            // A stale pin is not.
            let res = c
                .get(format!("{base}/assets/{path}?v=0000000000000000"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.headers()["cache-control"], "no-cache", "{path}");
        }
    }

    #[tokio::test]
    async fn unknown_assets_are_404() {
        let base = serve().await;
        let c = client();
        for path in [
            "nope.js",
            "../Cargo.toml",
            "js/../../Cargo.toml",
            "%2e%2e/Cargo.toml",
        ] {
            let res = c.get(format!("{base}/assets/{path}")).send().await.unwrap();
            assert_eq!(res.status(), 404, "{path}");
        }
    }

    #[test]
    fn if_none_match_parsing() {
        let mut h = HeaderMap::new();
        assert!(!etag_matches(&h, "\"a\""));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"b\", W/\"a\""),
        );
        assert!(etag_matches(&h, "\"a\""));
        assert!(!etag_matches(&h, "\"c\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(etag_matches(&h, "\"c\""));
    }
}
