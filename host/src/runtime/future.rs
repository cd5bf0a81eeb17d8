//! [`InvokeFuture`]: an invocation on the worker pool, admitted when first
//! polled, waiting for a slot without blocking the executor.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;

use super::Core;
use super::admission::{Slot, Wait};
use super::workers::{Job, Reply};
use crate::error::{Error, Result};
use crate::function::Function;
use crate::guest::EventCtx;
use crate::invocation::Invocation;

/// Future returned by [`Host::invoke_async`](crate::Host::invoke_async).
#[must_use = "futures do nothing unless polled"]
pub struct InvokeFuture {
    state: FutState,
}

enum FutState {
    Admit {
        core: Arc<Core>,
        f: Arc<Function>,
        version: Option<u32>,
        payload: Bytes,
        event: Option<EventCtx>,
        /// Set once the checks passed (on the first poll): the end of the
        /// wait for a slot.
        wait_until: Option<Instant>,
    },
    Waiting(tokio::sync::oneshot::Receiver<Result<Invocation>>),
    Ready(Option<Result<Invocation>>),
}

impl Core {
    /// An invocation of `name` on the worker pool (see [`InvokeFuture`]).
    pub(crate) fn future(
        self: &Arc<Self>,
        name: &str,
        payload: Bytes,
        event: Option<EventCtx>,
    ) -> InvokeFuture {
        InvokeFuture {
            state: match self.registry.resolve(name) {
                Ok((f, version)) => FutState::Admit {
                    core: self.clone(),
                    f,
                    version,
                    payload,
                    event,
                    wait_until: None,
                },
                Err(e) => FutState::Ready(Some(Err(e))),
            },
        }
    }
}

impl Future for InvokeFuture {
    type Output = Result<Invocation>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match &mut self.state {
                FutState::Ready(r) => {
                    return Poll::Ready(r.take().unwrap_or(Err(Error::ShuttingDown)));
                }
                FutState::Waiting(rx) => {
                    return match Pin::new(rx).poll(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Ok(r)) => Poll::Ready(r),
                        // The job was dropped unanswered: only at shutdown.
                        Poll::Ready(Err(_)) => Poll::Ready(Err(Error::ShuttingDown)),
                    };
                }
                FutState::Admit {
                    core,
                    f,
                    version,
                    payload,
                    event,
                    wait_until,
                } => {
                    let until = match *wait_until {
                        Some(u) => u,
                        None => match core.check(f, payload.len()) {
                            Err(e) => {
                                self.state = FutState::Ready(Some(Err(core.refused(f, e))));
                                continue;
                            }
                            Ok(()) => *wait_until.insert(Instant::now() + f.policy.max_wait),
                        },
                    };
                    let waker = cx.waker();
                    match core.acquire(f, Wait::Poll { waker, until }) {
                        Slot::Got(permit) => {
                            core.admitted(f);
                            let (tx, rx) = tokio::sync::oneshot::channel();
                            core.enqueue(Job {
                                function: f.clone(),
                                version: *version,
                                payload: std::mem::take(payload),
                                permit,
                                event: event.take(),
                                reply: Reply::Future(tx),
                            });
                            FutState::Waiting(rx)
                        }
                        Slot::Pending => return Poll::Pending,
                        Slot::Full => {
                            FutState::Ready(Some(Err(core.refused(f, core.throttled(f)))))
                        }
                    }
                }
            };
            self.state = next;
        }
    }
}
