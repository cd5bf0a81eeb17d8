//! Admission of an HTTP exchange ahead of the thread that runs it: an
//! async caller (the gateway) gets its slot — or its refusal, at once —
//! without first taking a thread that would then sit waiting or be
//! queued. [`HttpAdmission`] waits for a slot as [`InvokeFuture`]
//! (super::InvokeFuture) does (a waker, never a blocked thread); the
//! [`HttpTicket`] it yields runs the exchange on whatever thread calls
//! [`HttpTicket::invoke`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;

use super::Core;
use super::admission::{Slot, Wait};
use crate::error::{Error, Result};
use crate::exchange::{Exchange, Respond};
use crate::function::Function;
use crate::guest::Input;
use crate::invocation::Invocation;
use crate::limits::Permit;

/// Future returned by [`Host::admit_http`](crate::Host::admit_http).
#[must_use = "futures do nothing unless polled"]
pub struct HttpAdmission {
    state: Option<Result<Pending>>,
}

struct Pending {
    core: Arc<Core>,
    f: Arc<Function>,
    version: Option<u32>,
    declared: usize,
    /// Set on the first poll, once the checks passed.
    until: Option<Instant>,
}

/// An admitted HTTP exchange: it holds its concurrency slot until
/// [`invoke`](HttpTicket::invoke) runs it (dropped unused, the admission
/// is undone and nothing is counted).
pub struct HttpTicket {
    core: Arc<Core>,
    f: Arc<Function>,
    version: Option<u32>,
    permit: Permit,
    admitted: Admitted,
}

/// Undoes the admission's count when its ticket is dropped unused.
struct Admitted {
    core: Arc<Core>,
    f: Arc<Function>,
    used: bool,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if !self.used {
            // Admitted and never run: not a request after all.
            self.core.unadmitted(&self.f);
        }
    }
}

impl Core {
    /// The admission of an HTTP exchange with `f` whose request declares
    /// `declared` body bytes.
    pub(crate) fn admit_http(
        self: &Arc<Self>,
        f: Result<(Arc<Function>, Option<u32>)>,
        declared: usize,
    ) -> HttpAdmission {
        HttpAdmission {
            state: Some(f.map(|(f, version)| Pending {
                core: self.clone(),
                f,
                version,
                declared,
                until: None,
            })),
        }
    }
}

impl Future for HttpAdmission {
    type Output = Result<HttpTicket>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Not found, not an HTTP component (or polled after it answered).
        let Some(Ok(p)) = self.state.as_mut() else {
            return Poll::Ready(Err(match self.state.take() {
                Some(Err(e)) => e,
                _ => Error::ShuttingDown,
            }));
        };
        let until = match p.until {
            Some(u) => u,
            None => match p.core.check(&p.f, p.declared) {
                Err(e) => {
                    let e = p.core.refused(&p.f, e);
                    self.state = None;
                    return Poll::Ready(Err(e));
                }
                Ok(()) => *p.until.insert(Instant::now() + p.f.policy.max_wait),
            },
        };
        let got = p.core.acquire(
            &p.f,
            Wait::Poll {
                waker: cx.waker(),
                until,
            },
        );
        let permit = match got {
            Slot::Pending => return Poll::Pending,
            Slot::Full => {
                let e = p.core.refused(&p.f, p.core.throttled(&p.f));
                self.state = None;
                return Poll::Ready(Err(e));
            }
            Slot::Got(permit) => permit,
        };
        p.core.admitted(&p.f);
        let Some(Ok(p)) = self.state.take() else {
            return Poll::Ready(Err(Error::ShuttingDown));
        };
        Poll::Ready(Ok(HttpTicket {
            admitted: Admitted {
                core: p.core.clone(),
                f: p.f.clone(),
                used: false,
            },
            core: p.core,
            f: p.f,
            version: p.version,
            permit,
        }))
    }
}

impl HttpTicket {
    /// Runs the exchange on this thread (see
    /// [`Host::invoke_http`](crate::Host::invoke_http), which is
    /// [`Host::admit_http`](crate::Host::admit_http) then this).
    pub fn invoke<B>(self, request: http::Request<B>, respond: Respond) -> Invocation
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::fmt::Display,
    {
        let HttpTicket {
            core,
            f,
            version,
            permit,
            mut admitted,
        } = self;
        admitted.used = true;
        let exchange = Exchange::new(request, f.policy.max_input, respond);
        let input = Input::Http(Box::new(exchange));
        core.execute_input(&f, version, input, permit, None)
    }
}

impl std::fmt::Debug for HttpTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTicket")
            .field("function", &self.f.spec.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for HttpAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAdmission").finish_non_exhaustive()
    }
}
