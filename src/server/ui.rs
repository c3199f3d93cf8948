//! The web UI at `/ui/` (DESIGN §6): search with a histogram, alerts and silences, rules
//! with dry runs, PromQL charts and scrape targets. Plain HTML, CSS and JavaScript with
//! no build step and no libraries, embedded in the binary with `include_bytes!`; every
//! page is the one `index.html` shell, which reads its state from the URL
//! (`/ui/search?index=I&q=LUCENE&from=T&to=T`, the link Slack messages carry) and calls
//! the same APIs as everyone else. The files themselves are open (they hold no data) so
//! the UI can ask for a key, which it sends as a header with each API call.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::error::{ApiError, ErrorCode};

const INDEX_HTML: &[u8] = include_bytes!("ui/index.html");
const APP_JS: &[u8] = include_bytes!("ui/app.js");
const PATTERNS_JS: &[u8] = include_bytes!("ui/patterns.js");
const STYLE_CSS: &[u8] = include_bytes!("ui/style.css");
const SLOS_JS: &[u8] = include_bytes!("ui/slos.js");

/// Global: the same files for every tenant (the pages' API calls go to the tenant's).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/search") }))
        .route("/ui/", get(|| async { Redirect::permanent("/ui/search") }))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/{*page}", get(page))
}

fn respond(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // the assets change with the binary: revalidate, but let the browser keep them
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    response
}

async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => respond("text/javascript; charset=utf-8", APP_JS),
        "patterns.js" => respond("text/javascript; charset=utf-8", PATTERNS_JS),
        "style.css" => respond("text/css; charset=utf-8", STYLE_CSS),
        "slos.js" => respond("text/javascript; charset=utf-8", SLOS_JS),
        _ => not_found(
            "no such UI asset; the UI has /ui/assets/app.js, /ui/assets/patterns.js, /ui/assets/slos.js and /ui/assets/style.css",
        ),
    }
}

/// Every page is the shell; its script draws the page the path names.
async fn page(Path(page): Path<String>) -> Response {
    let known = [
        "search", "alerts", "rules", "metrics", "slos", "targets", "audit",
    ];
    if known.contains(&page.trim_end_matches('/')) {
        respond("text/html; charset=utf-8", INDEX_HTML)
    } else {
        not_found(
            "no such UI page; try /ui/search, /ui/alerts, /ui/rules, /ui/metrics, /ui/slos, /ui/targets or /ui/audit",
        )
    }
}

/// A JSON 404 that does not echo the path: a text answer repeating what the link said
/// would let any page put its words on this origin.
fn not_found(reason: &'static str) -> Response {
    ApiError::new(ErrorCode::NotFound, "resource_not_found_exception", reason).into_response()
}
