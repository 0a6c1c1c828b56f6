//! A [`VladError`] with the file it is about, so every message names what
//! and where even when the library's error knows only a row number.

use std::fmt;
use std::path::Path;

use vlad::VladError;

/// Why a subcommand failed, and where.
#[derive(Debug)]
pub struct Failure {
    error: VladError,
    context: Option<String>,
}

impl Failure {
    /// The exit status SPEC §8 gives this failure.
    pub fn exit_code(&self) -> u8 {
        super::exit::exit_code(&self.error)
    }
}

impl From<VladError> for Failure {
    fn from(error: VladError) -> Self {
        Failure {
            error,
            context: None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.context {
            Some(context) => write!(f, "{context}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

/// Prefix an error with `context` unless its message already says it
/// (I/O and format errors name their file themselves).
pub fn within(context: impl Into<String>) -> impl FnOnce(VladError) -> Failure {
    let context = context.into();
    move |error| {
        let context = (!error.to_string().contains(&context)).then_some(context);
        Failure { error, context }
    }
}

/// [`within`] the file at `path`.
pub fn in_file(path: &Path) -> impl FnOnce(VladError) -> Failure {
    within(path.display().to_string())
}
