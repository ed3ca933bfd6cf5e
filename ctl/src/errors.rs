//! Turning failures into the one line a person reads: gRPC statuses become "not found: ...",
//! a dead server becomes "cannot reach slice-service at URL (is it running?)", usage errors lose
//! clap's multi-line help. Never a Rust debug dump, never a panic message with a backtrace.
//! An error the service answered ends with its request id, `(request id 3f9c2a0b1d4e5f67)`,
//! which an operator finds in the service's log. Every request of one run carries the same
//! id (`--request-id`, or a fresh one), so a call that got no answer at all (a timeout, a
//! connection cut) still names what to look for.

use std::{process::ExitCode, sync::OnceLock};

use tonic::{Code, Status};

static SERVER: OnceLock<String> = OnceLock::new();
static REQUEST_ID: OnceLock<String> = OnceLock::new();

/// Sets the id every request of this run carries: `given` (checked as the service checks it)
/// or a fresh one.
pub fn set_request_id(given: Option<&str>) -> anyhow::Result<()> {
    let id = match given {
        Some(id) if valid_request_id(id) => id.to_string(),
        Some(id) => anyhow::bail!("invalid --request-id {id:?}: use 1 to 64 of A-Z a-z 0-9 . _ -"),
        None => fresh_request_id(),
    };
    let _ = REQUEST_ID.set(id);
    Ok(())
}

/// The id this run's requests carry.
pub fn run_request_id() -> &'static str {
    REQUEST_ID.get_or_init(fresh_request_id)
}

/// 16 hex digits from the standard library's randomly keyed hasher (no extra dependency; an
/// id to find log lines by, not a secret).
fn fresh_request_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Remembers which server this run talks to, so that errors can name it.
pub fn set_server(url: &str) {
    let _ = SERVER.set(url.to_string());
}

/// An error meaning the service could not be reached at all.
#[derive(Debug)]
pub struct Unreachable {
    /// The URL that was tried.
    pub server: String,
    /// Why, when it is not the usual "connection refused".
    pub detail: Option<String>,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            None => write!(
                f,
                "cannot reach slice-service at {} (is it running?)",
                self.server
            ),
            Some(d) => write!(f, "cannot reach slice-service at {}: {d}", self.server),
        }
    }
}

impl std::error::Error for Unreachable {}

/// Not a failure to describe but an exit code to pass on: `shell` ends with the remote command's
/// code, `exec` with 1 after its summary table has said what went wrong.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// One line describing `err` and its causes; a gRPC status anywhere in the chain is spelled out.
pub fn describe(err: &anyhow::Error) -> String {
    describe_sent(err, REQUEST_ID.get().map(String::as_str))
}

/// [`describe`], naming `sent` (the id the run's requests carried) when no answer did.
fn describe_sent(err: &anyhow::Error, sent: Option<&str>) -> String {
    let mut parts = Vec::new();
    for cause in err.chain() {
        if let Some(status) = cause.downcast_ref::<Status>() {
            let mut line = status_line(status);
            match request_id(status) {
                Some(id) => line.push_str(&format!(" (request id {id})")),
                // No answer carrying one (tonic made this status: a timeout, a connection cut):
                // the id the run's requests were sent with, which the service keeps as given.
                None => {
                    if let Some(id) = sent {
                        line.push_str(&format!(" (request id {id})"));
                    }
                }
            }
            parts.push(line);
            break;
        }
        let text = cause.to_string();
        // anyhow's context chain often repeats the inner message; keep each piece once.
        if !parts.last().is_some_and(|p: &String| p.ends_with(&text)) {
            parts.push(text);
        }
    }
    one_line(&parts.join(": "))
}

/// The id the service gave the call that ended in `status` (its `x-request-id` header or
/// trailer), if it sent one that is safe to print: at most 64 of `A-Z a-z 0-9 . _ -`.
pub fn request_id(status: &Status) -> Option<&str> {
    let id = status.metadata().get("x-request-id")?.to_str().ok()?;
    valid_request_id(id).then_some(id)
}

/// "permission denied: ...", "not found: slice \"x\"" and so on.
pub fn status_line(status: &Status) -> String {
    let msg = one_line(status.message());
    let server = || {
        SERVER
            .get()
            .map(String::as_str)
            .unwrap_or("the configured address")
    };
    // tonic reports an HTTP/2 failure under the connection (e.g. plain text to a TLS port) so.
    if msg == "transport error" && matches!(status.code(), Code::Unknown | Code::Unavailable) {
        return format!(
            "cannot talk to slice-service at {}: the connection failed (if it uses TLS, use an https:// URL and --ca-cert)",
            server()
        );
    }
    let words = match status.code() {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "timed out",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "not enough resources",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "not supported by this slice-service",
        Code::Internal => "internal error in slice-service",
        Code::Unavailable if is_transport_failure(&msg) => {
            return Unreachable {
                server: server().into(),
                detail: None,
            }
            .to_string();
        }
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => {
            let hint = "(check the token, or run slicectl login)";
            return if msg.is_empty() {
                format!("unauthenticated {hint}")
            } else {
                format!("unauthenticated: {msg} {hint}")
            };
        }
    };
    if words.is_empty() {
        msg
    } else if msg.is_empty() {
        words.to_string()
    } else if msg.to_lowercase().contains(words) {
        // 'site "mit" already exists' says it already; "already exists: ..." would stutter.
        msg
    } else {
        format!("{words}: {msg}")
    }
}

fn is_transport_failure(msg: &str) -> bool {
    let m = msg.to_lowercase();
    m.is_empty()
        || ["connect", "transport", "broken pipe", "connection", "dns"]
            .iter()
            .any(|w| m.contains(w))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Prints a command-line usage error as one line (help and version print as usual).
pub fn report_clap(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
    }
    eprintln!("{}", clap_line(&e.render().to_string()));
    ExitCode::from(2)
}

/// clap's rendered error without its "Usage:" block, joined into one line.
fn clap_line(rendered: &str) -> String {
    let body: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    let mut line = body.join(" ");
    if !line.starts_with("error:") {
        line = format!("error: {line}");
    }
    line
}

/// Replaces Rust's panic message with one line. A closed stdout (`slicectl slice list | head`)
/// is not an error at all.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unexpected failure");
        if msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        eprintln!("error: internal error in slicectl: {}", one_line(msg));
        std::process::exit(101);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_well() {
        assert_eq!(
            status_line(&Status::not_found("slice \"x\"")),
            "not found: slice \"x\""
        );
        assert_eq!(
            status_line(&Status::not_found("not found: slice \"x\"")),
            "not found: slice \"x\""
        );
        assert_eq!(
            status_line(&Status::already_exists("site \"mit\" already exists")),
            "site \"mit\" already exists"
        );
        assert_eq!(
            status_line(&Status::permission_denied("only admins\nmay do that")),
            "permission denied: only admins may do that"
        );
        assert!(status_line(&Status::unauthenticated("bad token")).contains("slicectl login"));
        assert!(status_line(&Status::unavailable("tcp connect error"))
            .starts_with("cannot reach slice-service"));
        assert_eq!(
            status_line(&Status::unavailable("node is away")),
            "unavailable: node is away"
        );
    }

    #[test]
    fn chains_become_one_line() {
        let e = anyhow::Error::new(Status::already_exists("site \"mit\"")).context("creating site");
        assert_eq!(
            describe_sent(&e, None),
            "creating site: already exists: site \"mit\""
        );
        let e = anyhow::anyhow!("bad\n  thing");
        assert_eq!(describe_sent(&e, None), "bad thing");
    }

    fn with_id(mut s: Status, id: &str) -> Status {
        s.metadata_mut().insert("x-request-id", id.parse().unwrap());
        s
    }

    #[test]
    fn answered_errors_end_with_their_request_id() {
        let s = with_id(
            Status::not_found("slice \"x\" not found"),
            "3f9c2a0b1d4e5f67",
        );
        let e = anyhow::Error::new(s).context("showing slice");
        assert_eq!(
            describe_sent(&e, None),
            "showing slice: slice \"x\" not found (request id 3f9c2a0b1d4e5f67)"
        );
        // No id (the service was never reached, or an old one): nothing added, or the id the
        // run's requests were sent with.
        let e = anyhow::Error::new(Status::not_found("slice \"x\" not found"));
        assert_eq!(describe_sent(&e, None), "slice \"x\" not found");
        assert_eq!(
            describe_sent(&e, Some("run-1")),
            "slice \"x\" not found (request id run-1)"
        );
        // An id that could do something to a terminal or a shell is not printed.
        for bad in ["has space", "semi;colon", &"a".repeat(65)] {
            let e = anyhow::Error::new(with_id(Status::internal("x"), bad));
            assert!(!describe_sent(&e, None).contains("request id"), "{bad}");
        }
    }

    #[test]
    fn clap_errors_lose_usage() {
        let rendered = "error: the following required arguments were not provided:\n  --site <SITE>\n\nUsage: slicectl user create --site <SITE> <NAME>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            clap_line(rendered),
            "error: the following required arguments were not provided: --site <SITE>"
        );
        let rendered = "error: invalid value '0' for '--cpu <CPU>': too small\n\nFor more information, try '--help'.\n";
        assert_eq!(
            clap_line(rendered),
            "error: invalid value '0' for '--cpu <CPU>': too small"
        );
    }
}
