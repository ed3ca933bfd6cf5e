//! The crate's error: each variant names what was wrong, for the user to read.

/// What is wrong with a digest, a reference, a manifest or an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A digest that is not `sha256:<64 lowercase hex>`.
    Digest(String),
    /// A bad image reference (name, tag or digest part).
    Reference(String),
    /// A manifest or config that cannot be used.
    Manifest(String),
    /// Bytes whose sha256 is not the one expected.
    Mismatch { expected: String, actual: String },
    /// Writing an archive failed.
    Io(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Digest(m) | Error::Reference(m) | Error::Manifest(m) | Error::Io(m) => {
                f.write_str(m)
            }
            Error::Mismatch { expected, actual } => {
                write!(f, "digest mismatch: expected {expected}, got {actual}")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// Result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
