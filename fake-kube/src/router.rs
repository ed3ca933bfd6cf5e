//! URL paths to the resource they name: `/api/v1[/namespaces/NS]/PLURAL[/NAME[/SUB]]` and
//! `/apis/GROUP/VERSION/...`, plus the discovery documents.

use crate::kinds::{self, Kind};

#[derive(Debug, PartialEq)]
pub enum Route {
    /// A discovery or health document, by path.
    Discovery(String),
    Resource {
        kind: &'static Kind,
        namespace: Option<String>,
        name: Option<String>,
        sub: Option<String>,
    },
    NotFound,
}

pub fn route(path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api"] | ["apis"] | ["version"] | ["healthz"] | ["livez"] | ["readyz"] | ["api", "v1"] => {
            return Route::Discovery(format!("/{}", segs.join("/")))
        }
        ["apis", g, v] => return Route::Discovery(format!("/apis/{g}/{v}")),
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::NotFound,
    };
    let owned = |s: Option<&&str>| s.map(|s| s.to_string());
    // `namespaces/NS/PLURAL...` is a namespaced resource when PLURAL is one; otherwise the path
    // is about the Namespace object itself (`namespaces/NS[/status]`).
    if let ["namespaces", ns, plural, tail @ ..] = rest {
        if let Some(kind) = kinds::find(group, version, plural).filter(|k| k.namespaced) {
            if tail.len() > 2 {
                return Route::NotFound;
            }
            return Route::Resource {
                kind,
                namespace: Some(ns.to_string()),
                name: owned(tail.first()),
                sub: owned(tail.get(1)),
            };
        }
    }
    match rest {
        [plural, tail @ ..] if tail.len() <= 2 => match kinds::find(group, version, plural) {
            // A namespaced kind without a namespace: a list or watch across all namespaces.
            Some(kind) if kind.namespaced && !tail.is_empty() => Route::NotFound,
            Some(kind) => Route::Resource {
                kind,
                namespace: None,
                name: owned(tail.first()),
                sub: owned(tail.get(1)),
            },
            None => Route::NotFound,
        },
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_right_resource() {
        let r = route("/api/v1/namespaces/s1/pods/p/log");
        assert!(
            matches!(r, Route::Resource { kind, namespace: Some(ref n), name: Some(ref p), sub: Some(ref s) }
            if kind.plural == "pods" && n == "s1" && p == "p" && s == "log")
        );
        assert!(
            matches!(route("/api/v1/namespaces/s1"), Route::Resource { kind, name: Some(_), .. } if kind.plural == "namespaces")
        );
        assert!(matches!(
            route("/api/v1/namespaces/s1/status"),
            Route::Resource { sub: Some(_), .. }
        ));
        assert!(matches!(
            route("/api/v1/pods"),
            Route::Resource {
                namespace: None,
                name: None,
                ..
            }
        ));
        assert!(
            matches!(route("/apis/networking.k8s.io/v1/namespaces/a/networkpolicies"), Route::Resource { kind, .. } if kind.kind == "NetworkPolicy")
        );
        assert_eq!(route("/api/v1/configmaps"), Route::NotFound);
        assert_eq!(route("/api/v1/pods/x"), Route::NotFound);
    }
}
