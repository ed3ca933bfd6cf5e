//! The status page's static files, embedded in the binary: no build step, no npm, no files to
//! install beside the service. Each is served with its type and a short cache lifetime; a
//! path not listed here is not found (nothing is ever read from disk).

/// One embedded file.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

/// The embedded file at `path` (under `/static/`).
pub fn get(path: &str) -> Option<Asset> {
    let (content_type, body) = match path {
        "app.js" => (
            "text/javascript; charset=utf-8",
            include_str!("assets/app.js"),
        ),
        "style.css" => ("text/css; charset=utf-8", include_str!("assets/style.css")),
        "favicon.svg" => ("image/svg+xml", include_str!("assets/favicon.svg")),
        // Natural Earth land outlines (public domain), drawn by scripts/world-map.py.
        "world.svg" => ("image/svg+xml", include_str!("assets/world.svg")),
        _ => return None,
    };
    Some(Asset { content_type, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_are_embedded_and_nothing_else_is_served() {
        let map = get("world.svg").unwrap();
        assert!(map.body.contains("Natural Earth"), "provenance is stated");
        assert!(map.body.len() < 150_000, "{} bytes", map.body.len());
        assert!(get("app.js").unwrap().body.contains("sessionStorage"));
        assert!(get("../lib.rs").is_none() && get("").is_none());
    }
}
