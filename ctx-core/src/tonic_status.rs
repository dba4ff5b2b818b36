//! `tonic::Status: From<Error>` (feature `tonic`): a handler that stops because its context is
//! done answers with the gRPC code a Go server would send. It lives here, beside [`Error`],
//! because the orphan rule allows the impl only in the crate of `Error` or of `Status`.

use crate::Error;

/// `Canceled` becomes `CANCELLED`, `DeadlineExceeded` becomes `DEADLINE_EXCEEDED`; the message
/// is the error's text (Go's: `"context canceled"`, `"context deadline exceeded"`).
///
/// ```
/// let status = tonic::Status::from(ctx::Error::DeadlineExceeded);
/// assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
/// assert_eq!(status.message(), "context deadline exceeded");
/// assert_eq!(tonic::Status::from(ctx::Error::Canceled).code(), tonic::Code::Cancelled);
/// ```
impl From<Error> for tonic::Status {
    fn from(error: Error) -> tonic::Status {
        let code = match error {
            Error::Canceled => tonic::Code::Cancelled,
            Error::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        };
        tonic::Status::new(code, error.to_string())
    }
}
