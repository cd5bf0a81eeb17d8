//! Counters, usage and instances: read from the function layer.

use std::sync::Arc;
use std::time::Instant;

use super::Host;
use crate::error::Result;
use crate::function::registry::Entry;
use crate::metering::{PriceModel, Usage, UsageSummary};
use crate::metrics::MetricsSnapshot;
use crate::target::{FunctionRef, Qualifier};

impl Host {
    /// `name`'s entry and which of its versions `name` selects: all of
    /// them without a qualifier; the newest for `$LATEST`; one number; or
    /// the versions an alias routes to.
    fn selected(&self, name: &str) -> Result<(Arc<Entry>, impl Fn(u32) -> bool + use<>)> {
        let target = FunctionRef::parse(name);
        let e = self.entry(target.name)?;
        let mut versions = None;
        if name.contains(':') {
            versions = Some(match target.qualifier {
                Qualifier::Latest => e.latest().map(|(v, _)| *v).into_iter().collect(),
                Qualifier::Version(v) => vec![v],
                Qualifier::Alias(a) => e
                    .aliases
                    .get(a)
                    .map(|a| {
                        std::iter::once(a.version)
                            .chain(a.additional.map(|(v, _)| v))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        Ok((e, move |v: u32| {
            versions
                .as_ref()
                .is_none_or(|vs: &Vec<u32>| vs.contains(&v))
        }))
    }

    /// Counters of one function (all its versions), or of one version
    /// (`name:3`).
    pub fn function_metrics(&self, name: &str) -> Result<MetricsSnapshot> {
        let (e, selected) = self.selected(name)?;
        let mut total = MetricsSnapshot::default();
        let mut max = 0;
        for (v, f) in &e.versions {
            if selected(*v) {
                let m = f.metrics.snapshot();
                max = max.max(m.max_in_flight);
                total.absorb(&m);
            }
        }
        // Versions share one concurrency gate; the per-version maxima bound
        // the function's from below.
        total.max_in_flight = max;
        Ok(total)
    }

    fn per_function(&self) -> Vec<(String, MetricsSnapshot)> {
        self.inner
            .core
            .registry
            .names()
            .into_iter()
            .filter_map(|n| self.function_metrics(&n).ok().map(|m| (n, m)))
            .collect()
    }

    /// Host-wide counters: the sum over registered functions, with the
    /// host's own current and peak concurrency.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut total = MetricsSnapshot::default();
        for f in self.inner.core.registry.all() {
            total.absorb(&f.metrics.snapshot());
        }
        let (now, max) = self.inner.core.host_in_flight();
        total.in_flight = now;
        total.max_in_flight = max;
        total
    }

    /// Usage and cost per function and in total under `prices`, from the
    /// counters since the host started.
    pub fn usage(&self, prices: &PriceModel) -> UsageSummary {
        let per = self
            .per_function()
            .into_iter()
            .map(|(n, m)| (n, Usage::of(&m)))
            .collect();
        UsageSummary::new(per, prices)
    }

    /// All metrics in the Prometheus text format (what the gateway's
    /// `/metrics` serves).
    pub fn prometheus(&self) -> String {
        crate::metrics::render_prometheus(&self.per_function(), &self.metrics())
    }

    /// Instances of `name` (all versions, or one: `name:3`) alive now:
    /// `(live, idle)`.
    pub fn instances(&self, name: &str) -> Result<(u32, usize)> {
        let (e, selected) = self.selected(name)?;
        Ok(e.versions
            .iter()
            .filter(|(v, _)| selected(**v))
            .fold((0, 0), |(l, i), (_, f)| {
                (l + f.pool.live(), i + f.pool.idle())
            }))
    }

    /// Releases reuse-mode instances idle past their TTL as of `now` (the
    /// maintenance thread does this every interval; tests pass a chosen
    /// clock). Returns how many were released.
    pub fn release_idle(&self, now: Instant) -> usize {
        self.inner.core.reap(now)
    }
}
