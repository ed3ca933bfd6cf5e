//! The resource kinds the fake serves: their REST names, API groups and scope.
//!
//! This table is the only place that knows which kinds exist; a path naming anything else gets a
//! 404 `Status`, never a guess.

/// One served resource kind.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    /// REST plural, as in the URL (`pods`).
    pub plural: &'static str,
    /// `kind` field of the object (`Pod`).
    pub kind: &'static str,
    /// API group, empty for core.
    pub group: &'static str,
    pub version: &'static str,
    pub namespaced: bool,
    /// Whether `.status` belongs to the `/status` subresource (writes to the main resource keep it).
    pub has_status: bool,
}

impl Kind {
    /// `apiVersion` as objects carry it (`v1`, `networking.k8s.io/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Singular lower-case name used in messages (`pods "x" not found` uses the plural; a few
    /// messages use this).
    pub fn resource_ref(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const fn core(
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    has_status: bool,
) -> Kind {
    Kind {
        plural,
        kind,
        group: "",
        version: "v1",
        namespaced,
        has_status,
    }
}

pub static KINDS: &[Kind] = &[
    core("namespaces", "Namespace", false, true),
    core("nodes", "Node", false, true),
    core("pods", "Pod", true, true),
    core("resourcequotas", "ResourceQuota", true, true),
    core("limitranges", "LimitRange", true, false),
    core("services", "Service", true, true),
    core("events", "Event", true, false),
    Kind {
        plural: "networkpolicies",
        kind: "NetworkPolicy",
        group: "networking.k8s.io",
        version: "v1",
        namespaced: true,
        has_status: false,
    },
    // Appended, so the indices `namespaces()`, `nodes()` and `pods()` rely on stay put.
    core("secrets", "Secret", true, false),
];

/// The kind served under `group`/`version` with this plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.plural == plural)
}

/// The kind with this plural in any group (test hooks name kinds by plural only).
pub fn by_plural(plural: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.plural == plural)
}

/// The Namespace kind (namespaced writes check their namespace through it).
pub fn namespaces() -> &'static Kind {
    &KINDS[0]
}

/// The Node kind.
pub fn nodes() -> &'static Kind {
    &KINDS[1]
}

/// The Pod kind.
pub fn pods() -> &'static Kind {
    &KINDS[2]
}
