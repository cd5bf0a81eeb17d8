//! [`Invocation`]: what an invocation that ran gives back.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::logs::Logs;
use crate::report::Report;

/// The result of an invocation that ran: the outcome, the guest's logs and
/// the usage report. Produced even when the guest failed.
#[derive(Debug)]
pub struct Invocation {
    /// The output bytes, or what went wrong while the guest ran.
    pub outcome: Result<Bytes, Error>,
    /// Captured stdout/stderr.
    pub logs: Logs,
    /// Usage and timing.
    pub report: Report,
}

impl Invocation {
    /// The output, or the error the guest run ended with.
    pub fn output(&self) -> Result<&[u8], &Error> {
        self.outcome.as_ref().map(|b| &b[..])
    }

    /// Consumes the invocation, keeping only the outcome.
    pub fn into_output(self) -> Result<Bytes> {
        self.outcome
    }
}
