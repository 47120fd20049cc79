//! Scopes as the Janssen SCIM server names them, and which one each kind of
//! request needs.

use std::borrow::Cow;
use std::collections::BTreeSet;

/// The default prefix of every SCIM scope.
pub const DEFAULT_PREFIX: &str = "https://jans.io/scim/";

/// What a route needs from the caller's token. Declared next to each route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Need {
    /// Reads and `.search` of one resource type: `<family>.read`.
    Read,
    /// POST, PUT, PATCH, DELETE of one resource type: `<family>.write`.
    Write,
    /// `/Bulk`: `bulk`, and each operation its own scope.
    Bulk,
    /// Root `/.search`: `all-resources.search`.
    SearchAll,
    /// Discovery documents: no token unless configured otherwise.
    Discovery,
    /// A valid token, no particular scope (a route that addresses no
    /// resource type).
    AnyToken,
    /// `GET /Me`: what reading `/Users` needs, `users.read`.
    MeRead,
    /// `PUT`, `PATCH`, `DELETE /Me`: `users.write`.
    MeWrite,
    /// `GET /metrics`: `metrics.read` (an operational scope, not granted to
    /// the bundled client).
    MetricsRead,
    /// `GET /admin/v1/audit`: `audit.read` (operational, not granted to the
    /// bundled client: the trail names every client and address).
    AuditRead,
}

/// The family of scopes guarding an endpoint: the Janssen names for the
/// built-in resource types, the lower-cased endpoint name for others.
pub fn family(endpoint: &str) -> String {
    let name = endpoint.trim_start_matches('/');
    match builtin(name) {
        Some(i) => BUILTIN_FAMILIES[i].1.to_string(),
        None => name.to_ascii_lowercase(),
    }
}

/// The built-in resource types' endpoints and the Janssen families of
/// their scopes.
const BUILTIN_FAMILIES: [(&str, &str); 4] = [
    ("users", "users"),
    ("groups", "groups"),
    ("fidodevices", "fido"),
    ("fido2devices", "fido2"),
];

/// Where a built-in resource type's endpoint (without its `/`) is in
/// `BUILTIN_FAMILIES`.
fn builtin(name: &str) -> Option<usize> {
    BUILTIN_FAMILIES
        .iter()
        .position(|(endpoint, _)| endpoint.eq_ignore_ascii_case(name))
}

/// Why the resource `endpoints` cannot each be guarded by scopes of their
/// own, if they cannot: two share a family (`/Fido` and `/FidoDevices` are
/// both `fido`), or one's `<family>.read` is an operational scope (`/Audit`
/// would be guarded by `audit.read`, the audit trail's scope, which the
/// bundled client would then get).
pub fn family_clash<'a>(endpoints: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let bare = Scopes::new("");
    let operational = bare.operational();
    let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for endpoint in endpoints {
        let f = family(endpoint);
        let endpoint = endpoint.trim_start_matches('/');
        if operational.contains(&bare.read(&f)) {
            return Some(format!(
                "the endpoint /{endpoint} would be guarded by {}, an operational scope",
                bare.read(&f)
            ));
        }
        if let Some(other) = seen.insert(f.clone(), endpoint) {
            return Some(format!(
                "the endpoints /{other} and /{endpoint} would share the scopes {f}.read and {f}.write"
            ));
        }
    }
    None
}

/// Scope names under one prefix.
#[derive(Debug, Clone)]
pub struct Scopes {
    prefix: String,
    /// The read and write scopes of the built-in families, in the order of
    /// `BUILTIN_FAMILIES`: named once, since every request checks one.
    builtin: Vec<(String, String)>,
}

impl Scopes {
    pub fn new(prefix: impl Into<String>) -> Scopes {
        let prefix = prefix.into();
        let builtin = BUILTIN_FAMILIES
            .iter()
            .map(|(_, f)| (format!("{prefix}{f}.read"), format!("{prefix}{f}.write")))
            .collect();
        Scopes { prefix, builtin }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix><family>.read`
    pub fn read(&self, family: &str) -> String {
        format!("{}{family}.read", self.prefix)
    }

    /// `<prefix><family>.write`
    pub fn write(&self, family: &str) -> String {
        format!("{}{family}.write", self.prefix)
    }

    pub fn bulk(&self) -> String {
        format!("{}bulk", self.prefix)
    }

    pub fn search_all(&self) -> String {
        format!("{}all-resources.search", self.prefix)
    }

    /// The scope a request needs, given the endpoint it addresses (for
    /// `Read` and `Write`); `None` when any valid token (or none) will do.
    pub fn required(&self, need: Need, endpoint: Option<&str>) -> Option<String> {
        self.required_ref(need, endpoint).map(Cow::into_owned)
    }

    /// [`Scopes::required`], borrowed where the scope is a built-in
    /// family's (the check every request makes).
    pub fn required_ref(&self, need: Need, endpoint: Option<&str>) -> Option<Cow<'_, str>> {
        let read_or_write = |endpoint: &str, write: bool| {
            let name = endpoint.trim_start_matches('/');
            match (builtin(name).and_then(|i| self.builtin.get(i)), write) {
                (Some((read, _)), false) => Cow::Borrowed(read.as_str()),
                (Some((_, write)), true) => Cow::Borrowed(write.as_str()),
                (None, false) => Cow::Owned(self.read(&family(name))),
                (None, true) => Cow::Owned(self.write(&family(name))),
            }
        };
        Some(match need {
            Need::Read => read_or_write(endpoint?, false),
            Need::Write => read_or_write(endpoint?, true),
            Need::MeRead => read_or_write("Users", false),
            Need::MeWrite => read_or_write("Users", true),
            Need::Bulk => Cow::Owned(self.bulk()),
            Need::SearchAll => Cow::Owned(self.search_all()),
            Need::MetricsRead => Cow::Owned(self.metrics_read()),
            Need::AuditRead => Cow::Owned(self.audit_read()),
            Need::Discovery | Need::AnyToken => return None,
        })
    }

    /// The scope of `GET /metrics`.
    pub fn metrics_read(&self) -> String {
        format!("{}metrics.read", self.prefix)
    }

    /// The scope of the audit trail, `GET /admin/v1/audit`.
    pub fn audit_read(&self) -> String {
        format!("{}audit.read", self.prefix)
    }

    /// The scopes of operations on the server rather than on SCIM data
    /// (a client is given them only when asked: `scimd client create
    /// prometheus --scopes metrics.read`).
    pub fn operational(&self) -> BTreeSet<String> {
        BTreeSet::from([self.metrics_read(), self.audit_read()])
    }

    /// Every SCIM scope for the given resource endpoints, plus bulk and the
    /// root search: what the bundled client may ask for.
    pub fn all<'a>(&self, endpoints: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for e in endpoints {
            let f = family(e);
            out.insert(self.read(&f));
            out.insert(self.write(&f));
        }
        out.insert(self.bulk());
        out.insert(self.search_all());
        out
    }
}

/// Splits an RFC 6749 `scope` parameter (space-separated).
pub fn parse_scope_param(scope: &str) -> BTreeSet<String> {
    scope.split_ascii_whitespace().map(str::to_string).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn janssen_names() {
        let s = Scopes::new(DEFAULT_PREFIX);
        assert_eq!(
            s.required(Need::Read, Some("/Users")).as_deref(),
            Some("https://jans.io/scim/users.read")
        );
        assert_eq!(
            s.required(Need::Write, Some("FidoDevices")).as_deref(),
            Some("https://jans.io/scim/fido.write")
        );
        assert_eq!(
            s.required(Need::Read, Some("Fido2Devices")).as_deref(),
            Some("https://jans.io/scim/fido2.read")
        );
        assert_eq!(
            s.required(Need::SearchAll, None).as_deref(),
            Some("https://jans.io/scim/all-resources.search")
        );
        assert_eq!(s.required(Need::Discovery, None), None);
        let all = s.all(["/Users", "/Groups", "/FidoDevices", "/Fido2Devices"]);
        assert_eq!(all.len(), 10);
    }

    #[test]
    fn built_in_scopes_are_named_once_in_any_case() {
        let s = Scopes::new("p:");
        for (endpoint, need, scope) in [
            ("USERS", Need::Read, "p:users.read"),
            ("/groups", Need::Write, "p:groups.write"),
            ("fido2Devices", Need::Write, "p:fido2.write"),
        ] {
            let required = s.required_ref(need, Some(endpoint));
            assert!(matches!(required, Some(Cow::Borrowed(_))), "{endpoint}");
            assert_eq!(required.as_deref(), Some(scope));
        }
        assert_eq!(
            s.required_ref(Need::MeWrite, None).as_deref(),
            Some("p:users.write")
        );
        let custom = s.required_ref(Need::Read, Some("/Printers"));
        assert!(matches!(custom, Some(Cow::Owned(_))));
        assert_eq!(custom.as_deref(), Some("p:printers.read"));
    }
}
