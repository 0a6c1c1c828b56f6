//! The command line's exit statuses (SPEC §8): 1 internal failure, 2 bad
//! input or usage, 3 requested backend unavailable, 4 verification failed.
//! They belong to the command line, not to the library's error type.

use vlad::VladError;

/// The exit status for a failure caused by `error`.
pub fn exit_code(error: &VladError) -> u8 {
    match error {
        VladError::BackendUnavailable(_) => 3,
        VladError::VerificationFailed(_) => 4,
        VladError::Gpu(_) => 1,
        // Everything else is the input or the request: the user can fix it
        // (a request too large for memory included: the message says what
        // to change).
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::exit_code;
    use vlad::VladError;

    #[test]
    fn each_kind_of_failure_has_its_status() {
        assert_eq!(exit_code(&VladError::BackendUnavailable("x".into())), 3);
        assert_eq!(exit_code(&VladError::VerificationFailed("x".into())), 4);
        assert_eq!(exit_code(&VladError::Gpu("x".into())), 1);
        assert_eq!(exit_code(&VladError::InvalidArgument("x".into())), 2);
        assert_eq!(
            exit_code(&VladError::TooLarge {
                what: "x".into(),
                bytes: None,
                hint: "y".into()
            }),
            2
        );
    }
}
