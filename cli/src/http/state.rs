//! What every request handler shares: the [`Gateway`].

use std::sync::Arc;

use axum::body::Bytes;
use fnhost::events::EventBackend;
use fnhost::{Error, Host, Invocation};

use super::Route;
use crate::cluster::Cluster;

/// What the gateway shares between requests.
pub struct Gateway {
    /// The host.
    pub host: Host,
    /// HTTP trigger routes.
    pub routes: Vec<Route>,
    /// Largest accepted body.
    pub max_body: usize,
    /// The cluster this node belongs to, if any.
    pub cluster: Option<Arc<Cluster>>,
    /// Credentials of the control API (none: it is off).
    pub admin: super::auth::AdminKeys,
}

impl Gateway {
    /// A gateway for `host` with no routes, a 6 MB body limit, no cluster
    /// and the control API off.
    pub fn new(host: Host) -> Gateway {
        Gateway {
            host,
            routes: Vec::new(),
            max_body: 6 << 20,
            cluster: None,
            admin: Default::default(),
        }
    }

    /// Where `Event` invocations go: the cluster's shared stream, else the
    /// host's own event store.
    pub(super) fn event_backend(&self) -> Arc<dyn EventBackend> {
        match &self.cluster {
            Some(c) => c.clone(),
            None => Arc::new(HostEvents(self.host.clone())),
        }
    }

    /// Brings this node's `name` in line with the cluster's registry
    /// before a control-plane read, so a read on any node shows every
    /// change acknowledged before it (no-op without a cluster).
    pub(crate) async fn catch_up(&self, name: &str) {
        if let Some(c) = &self.cluster {
            c.refresh(name).await;
        }
    }

    /// Runs `target` here. With a cluster, a function this node does not
    /// have yet is first fetched from the cluster's registry; an
    /// invocation this node has no slot for (or still cannot find) goes to
    /// another node. `Err` means no guest ran anywhere.
    pub(crate) async fn run(
        &self,
        target: &str,
        payload: Bytes,
        client: Option<&str>,
    ) -> Result<Invocation, Error> {
        let here = crate::client_context::start(&self.host, target, payload.clone(), client).await;
        let Some(c) = &self.cluster else {
            return here;
        };
        let here = match here {
            Err(Error::NotFound { .. }) => {
                c.refresh(crate::cluster::function_of(target)).await;
                crate::client_context::start(&self.host, target, payload.clone(), client).await
            }
            other => other,
        };
        match here {
            // No slot here; or the function is in the cluster but this node
            // could not apply it (another node may have).
            Err(e @ (Error::Throttled { .. } | Error::NotFound { .. })) => {
                c.forward(target, payload, client, e).await
            }
            other => other,
        }
    }
}

/// The host's own event store as an [`EventBackend`] the gateway can own.
struct HostEvents(Host);

impl EventBackend for HostEvents {
    fn send_event(&self, target: &str, payload: Bytes) -> fnhost::Result<String> {
        self.0.events().send_event(target, payload)
    }

    fn is_durable(&self) -> bool {
        self.0.events().is_durable()
    }
}

pub(crate) type Shared = Arc<Gateway>;
