//! Which path does what. Public: the page, its overview fragment and the embedded assets.
//! Behind a bearer token: the caller's slices and their live events. Nothing else is served,
//! and no route reads a request body.

use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::reply::{self, Body};
use super::{assets, auth, events, mine, pages, Web};

/// Answers one request (security headers are added by the caller).
pub async fn route<B>(web: &Web, req: Request<B>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    if !get {
        if req.method() == Method::POST && path == "/sign-in" {
            // The token form's fallback when scripts do not run: the token must not be read.
            return reply::text(
                StatusCode::BAD_REQUEST,
                "this page needs JavaScript to show your slices; the token was not read",
            );
        }
        let mut r = reply::text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path.as_str() {
        "/" => match web.overview.get(&web.core).await {
            Ok(o) => reply::html(pages::status_page(&o)),
            Err(e) => reply::error(e),
        },
        "/overview" => match web.overview.get(&web.core).await {
            Ok(o) => reply::html(pages::overview(&o)),
            Err(e) => reply::error(e),
        },
        "/api/mine" => {
            let who = match auth::caller(&web.core, req.headers()).await {
                Ok(w) => w,
                Err(e) => return reply::error(e),
            };
            match mine::render(&web.core, &who.principal).await {
                Ok(html) => reply::private(reply::html(html)),
                Err(e) => reply::error(e),
            }
        }
        "/api/events" => {
            let after = match after_param(req.uri().query()) {
                Ok(a) => a,
                Err(e) => return reply::error(e),
            };
            let who = match auth::caller(&web.core, req.headers()).await {
                Ok(w) => w,
                Err(e) => return reply::error(e),
            };
            events::open(&web.core, &web.streams, who, after)
                .await
                .unwrap_or_else(reply::error)
        }
        p => match p.strip_prefix("/static/").and_then(assets::get) {
            Some(a) => {
                let mut r = reply::with(StatusCode::OK, a.content_type, reply::full(a.body));
                r.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=300"),
                );
                r
            }
            None => reply::text(StatusCode::NOT_FOUND, "not found"),
        },
    }
}

/// `after=ID` of the events stream: the last event id the page has (0 or absent: from now).
fn after_param(query: Option<&str>) -> crate::error::Result<i64> {
    let Some(q) = query else { return Ok(0) };
    for pair in q.split('&') {
        if let Some(v) = pair.strip_prefix("after=") {
            return v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                crate::error::Error::invalid(format!(
                    "after must be an event id (a whole number of 0 or more), not {:?}",
                    crate::untrusted::bounded(v, 40)
                ))
            });
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_is_an_event_id_or_nothing() {
        assert_eq!(after_param(None).unwrap(), 0);
        assert_eq!(after_param(Some("after=42")).unwrap(), 42);
        assert_eq!(after_param(Some("x=1&after=7")).unwrap(), 7);
        let e = after_param(Some("after=-1")).unwrap_err().to_string();
        assert!(e.contains("after must be an event id"), "{e}");
        assert!(after_param(Some("after=abc")).is_err());
    }
}
