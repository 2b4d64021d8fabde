//! [`EndReason`]: why a WebSocket session to Zoom ended, from dialing
//! ([`super::zoom_dial`]) to reading ([`super::zoom_ws`]): the `reason` label of
//! `relay_ws_disconnects_total` and the log.

/// Why a session ended: the `reason` label of `relay_ws_disconnects_total` and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReason {
    ConnectFailed,
    TlsFailed,
    HandshakeFailed,
    BuildConnectionFailed,
    BuildConnectionTimeout,
    ReadError,
    InvalidToken,
    ServerClose,
    WriteError,
    Silent,
    Shutdown,
    /// Cold standby: another relay leads now.
    NotLeader,
}

impl EndReason {
    pub(super) fn label(self) -> &'static str {
        match self {
            EndReason::ConnectFailed => "connect_failed",
            EndReason::TlsFailed => "tls_failed",
            EndReason::HandshakeFailed => "handshake_failed",
            EndReason::BuildConnectionFailed => "build_connection_failed",
            EndReason::BuildConnectionTimeout => "build_connection_timeout",
            EndReason::ReadError => "read_error",
            EndReason::InvalidToken => "invalid_token",
            EndReason::ServerClose => "server_close",
            EndReason::WriteError => "write_error",
            EndReason::Silent => "silent",
            EndReason::Shutdown => "shutdown",
            EndReason::NotLeader => "not_leader",
        }
    }
}
