//! Which failed calls the server never processed: read from the error's source chain.
//!
//! The rules follow the peers that retry transparently (see the [module docs](super) for the
//! links): a call is retried only when the error proves that no byte of it reached a server
//! that could act on it, or that the server said so (`REFUSED_STREAM`, a graceful `GOAWAY`
//! whose last stream is below the call's).

use std::error::Error;
use std::fmt;
use std::io;

use super::preface::ClosedBeforePreface;

/// Why a call was retried: each is a proof that the server never processed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryReason {
    /// hyper gave the request back before writing it (`hyper::Error::is_canceled`): it was
    /// still queued when its connection closed, or the connection was not ready.
    NotSent,
    /// The connection could not be made (hyper-util's `Error::is_connect`, `ECONNREFUSED`, or
    /// a tonic connect error whose connection was closed or reset before it was up, TLS
    /// handshake included): nothing was written.
    ConnectFailed,
    /// A new cleartext HTTP/2 connection closed before the server's first byte (its
    /// `SETTINGS`), while [`PrefaceConnector`](super::PrefaceConnector) held every stream
    /// frame back: nothing of the call was written.
    ClosedBeforePreface,
    /// The server reset the stream with `REFUSED_STREAM` (RFC 9113 §8.7: not processed).
    Refused,
    /// The server's graceful `GOAWAY` (`NO_ERROR`) named a last stream below this one
    /// (RFC 9113 §6.8: streams above it were not processed).
    AboveGoAway,
}

impl RetryReason {
    /// All reasons, in the order [`RetryStats`](super::RetryStats) reports them.
    pub const ALL: [RetryReason; 5] = [
        RetryReason::NotSent,
        RetryReason::ConnectFailed,
        RetryReason::ClosedBeforePreface,
        RetryReason::Refused,
        RetryReason::AboveGoAway,
    ];

    /// Whether the call never left the client (grpc-java's `MISCARRIED`), as opposed to being
    /// turned away by the server (`REFUSED`). The former may be retried more often.
    pub fn never_left_client(self) -> bool {
        matches!(
            self,
            RetryReason::NotSent | RetryReason::ConnectFailed | RetryReason::ClosedBeforePreface
        )
    }

    /// A short name, for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::NotSent => "not_sent",
            RetryReason::ConnectFailed => "connect_failed",
            RetryReason::ClosedBeforePreface => "closed_before_preface",
            RetryReason::Refused => "refused",
            RetryReason::AboveGoAway => "above_goaway",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reason `error` proves the call unprocessed, or `None`: then it goes back to the caller.
///
/// Walks the source chain from the outside in. The first `h2::Error` found decides on its
/// own: it is the protocol's account of the stream, and an I/O error below it (a reset
/// connection) says nothing about whether the server saw the stream.
pub fn classify(error: &(dyn Error + 'static)) -> Option<RetryReason> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(error) = error.downcast_ref::<hyper::Error>() {
            if error.is_canceled() {
                return Some(RetryReason::NotSent);
            }
        } else if let Some(error) = error.downcast_ref::<hyper_util::client::legacy::Error>() {
            if error.is_connect() {
                return Some(RetryReason::ConnectFailed);
            }
        } else if let Some(error) = error.downcast_ref::<tonic::ConnectError>() {
            return classify_connect(error);
        } else if let Some(error) = error.downcast_ref::<h2::Error>() {
            return classify_h2(error);
        } else if let Some(error) = error.downcast_ref::<io::Error>() {
            return classify_io(error);
        }
        next = error.source();
    }
    None
}

/// tonic's connect error wraps what its connector failed with, the TLS handshake included
/// (tonic's `ClientTlsConfig` runs it there): the connection was never handed to hyper, so
/// no byte of a request was written. Retried when the connection was refused, or closed or
/// reset before the handshake ended (rustls' "tls handshake eof", a server or balancer that
/// accepted and closed); not for what a retry would meet again (a certificate refused, a name
/// that does not resolve, a timeout that spent the deadline).
fn classify_connect(error: &tonic::ConnectError) -> Option<RetryReason> {
    let mut next = error.source();
    while let Some(error) = next {
        if let Some(error) = error.downcast_ref::<io::Error>() {
            let closed = matches!(
                error.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            );
            return closed.then_some(RetryReason::ConnectFailed);
        }
        next = error.source();
    }
    None
}

fn classify_h2(error: &h2::Error) -> Option<RetryReason> {
    if let Some(error) = error.get_io() {
        return classify_io(error);
    }
    if !error.is_remote() {
        return None;
    }
    match error.reason() {
        Some(h2::Reason::REFUSED_STREAM) if error.is_reset() => Some(RetryReason::Refused),
        Some(h2::Reason::NO_ERROR) if error.is_go_away() => Some(RetryReason::AboveGoAway),
        _ => None,
    }
}

fn classify_io(error: &io::Error) -> Option<RetryReason> {
    if ClosedBeforePreface::is(error) {
        Some(RetryReason::ClosedBeforePreface)
    } else if error.kind() == io::ErrorKind::ConnectionRefused {
        // `connect(2)` is the only call that fails with ECONNREFUSED.
        Some(RetryReason::ConnectFailed)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type BoxError = Box<dyn Error + Send + Sync>;

    fn connect_error(cause: io::Error) -> BoxError {
        Box::new(tonic::ConnectError(Box::new(cause)))
    }

    #[test]
    fn a_tls_handshake_closed_by_the_server_is_a_connect_failure() {
        // What tokio-rustls returns when the connection ends mid-handshake.
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(
            classify(&*connect_error(eof)),
            Some(RetryReason::ConnectFailed)
        );
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::ConnectionRefused,
        ] {
            let error = connect_error(kind.into());
            assert_eq!(
                classify(&*error),
                Some(RetryReason::ConnectFailed),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn an_end_of_file_outside_a_connect_error_is_not_retried() {
        // The same EOF on a connection that carried requests says nothing about them.
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(classify(&eof), None);
        let reset: BoxError = Box::new(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(classify(&*reset), None);
    }

    #[test]
    fn a_connect_error_a_retry_would_meet_again_is_not_retried() {
        let refused_certificate =
            io::Error::new(io::ErrorKind::InvalidData, "invalid peer certificate");
        assert_eq!(classify(&*connect_error(refused_certificate)), None);
        let timeout = connect_error(io::ErrorKind::TimedOut.into());
        assert_eq!(classify(&*timeout), None);
    }
}
