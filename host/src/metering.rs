//! Metering: what invocations cost under a price model, in exact integer
//! arithmetic.
//!
//! Usage is kept as integers: requests, and memory × billed time in
//! MiB·ms. One GB-second (Lambda's unit, 1 GB = 1024 MiB) is
//! 1024 MiB × 1000 ms = 1,024,000 MiB·ms. Money is counted in
//! picodollars (10⁻¹² USD) in `u128`, and the only rounding (to the
//! nearest picodollar) happens once per summary, so millions of
//! invocations add up exactly.

use std::fmt;

use crate::metrics::MetricsSnapshot;

/// MiB·ms in one GB-second.
pub const MIB_MS_PER_GB_SECOND: u128 = 1_024_000;
/// Picodollars in one dollar.
pub const PICO_PER_USD: u128 = 1_000_000_000_000;

/// An amount of money in picodollars (10⁻¹² USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Money(pub u128);

impl Money {
    /// Parses a decimal dollar amount such as `"0.0000166667"` exactly
    /// (at most 12 decimals).
    pub fn from_usd(s: &str) -> Option<Money> {
        let s = s.strip_prefix('$').unwrap_or(s);
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() && frac.is_empty() || frac.len() > 12 {
            return None;
        }
        let digits = |d: &str| d.chars().all(|c| c.is_ascii_digit());
        if !digits(int) || !digits(frac) {
            return None;
        }
        let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let frac_val: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse().ok()?
        };
        let frac_pico = frac_val * 10u128.pow(12 - frac.len() as u32);
        int.checked_mul(PICO_PER_USD)?
            .checked_add(frac_pico)
            .map(Money)
    }
}

impl fmt::Display for Money {
    /// `$2.2833375`: all significant decimals, at least two.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let int = self.0 / PICO_PER_USD;
        let frac = format!("{:012}", self.0 % PICO_PER_USD);
        let trimmed = frac.trim_end_matches('0');
        let shown = if trimmed.len() < 2 {
            &frac[..2]
        } else {
            trimmed
        };
        write!(f, "${int}.{shown}")
    }
}

/// Prices and the monthly free tier. Defaults are Lambda's (x86, the
/// seed's figures): $0.20 per million requests, $0.0000166667 per
/// GB-second, 1M requests and 400,000 GB-seconds free per month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceModel {
    /// Price of one million requests.
    pub per_million_requests: Money,
    /// Price of one GB-second.
    pub per_gb_second: Money,
    /// Requests free per period.
    pub free_requests: u64,
    /// GB-seconds free per period.
    pub free_gb_seconds: u64,
}

impl Default for PriceModel {
    fn default() -> Self {
        PriceModel {
            per_million_requests: Money(200_000_000_000),
            per_gb_second: Money(16_666_700),
            free_requests: 1_000_000,
            free_gb_seconds: 400_000,
        }
    }
}

/// Integer usage: requests and MiB·ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Billed requests (invocations that ran, successful or not).
    pub requests: u64,
    /// Σ memory (MiB) × billed duration (ms).
    pub mib_ms: u128,
}

impl Usage {
    /// Usage from a metrics snapshot.
    pub fn of(m: &MetricsSnapshot) -> Usage {
        Usage {
            requests: m.succeeded + m.failed,
            mib_ms: m.mib_ms as u128,
        }
    }

    /// GB-seconds, for display (exact value: `mib_ms / 1_024_000`).
    pub fn gb_seconds(&self) -> f64 {
        self.mib_ms as f64 / MIB_MS_PER_GB_SECOND as f64
    }

    /// Cost under `prices`, before any free tier.
    pub fn cost(&self, prices: &PriceModel) -> Cost {
        Cost::of(self.requests as u128, self.mib_ms, prices)
    }

    /// Cost under `prices` after subtracting the free tier.
    pub fn cost_after_free_tier(&self, prices: &PriceModel) -> Cost {
        let requests = (self.requests as u128).saturating_sub(prices.free_requests as u128);
        let free_mib_ms = prices.free_gb_seconds as u128 * MIB_MS_PER_GB_SECOND;
        Cost::of(requests, self.mib_ms.saturating_sub(free_mib_ms), prices)
    }
}

/// A cost split into its request and compute parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    /// Request charges.
    pub requests: Money,
    /// Compute (GB-second) charges.
    pub compute: Money,
}

impl Cost {
    fn of(requests: u128, mib_ms: u128, p: &PriceModel) -> Cost {
        let div_round = |n: u128, d: u128| (n + d / 2) / d;
        Cost {
            requests: Money(div_round(requests * p.per_million_requests.0, 1_000_000)),
            compute: Money(div_round(mib_ms * p.per_gb_second.0, MIB_MS_PER_GB_SECOND)),
        }
    }

    /// Requests plus compute.
    pub fn total(&self) -> Money {
        Money(self.requests.0 + self.compute.0)
    }
}

/// Usage and cost per function and in total (see [`Host::usage`](crate::Host::usage)).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSummary {
    /// Per function: name, usage, cost before the free tier.
    pub functions: Vec<(String, Usage, Cost)>,
    /// All functions together.
    pub total: Usage,
    /// Total cost before the free tier.
    pub total_cost: Cost,
    /// Total cost after the free tier (which applies to the account, not
    /// per function).
    pub total_cost_after_free_tier: Cost,
}

impl UsageSummary {
    pub(crate) fn new(functions: Vec<(String, Usage)>, prices: &PriceModel) -> UsageSummary {
        let mut total = Usage::default();
        let functions = functions
            .into_iter()
            .map(|(name, u)| {
                total.requests += u.requests;
                total.mib_ms += u.mib_ms;
                let c = u.cost(prices);
                (name, u, c)
            })
            .collect();
        UsageSummary {
            functions,
            total,
            total_cost: total.cost(prices),
            total_cost_after_free_tier: total.cost_after_free_tier(prices),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Money {
        Money::from_usd(s).unwrap()
    }

    #[test]
    fn money_parses_and_prints_exactly() {
        assert_eq!(usd("0.20"), Money(200_000_000_000));
        assert_eq!(usd("$0.0000166667"), Money(16_666_700));
        assert_eq!(usd("2"), Money(2 * PICO_PER_USD));
        assert_eq!(Money::from_usd("0.0000000000001"), None);
        assert_eq!(Money::from_usd("1.2.3"), None);
        assert_eq!(Money::from_usd("-1"), None);
        assert_eq!(usd("2.2833375").to_string(), "$2.2833375");
        assert_eq!(Money(0).to_string(), "$0.00");
        assert_eq!(usd("0.5").to_string(), "$0.50");
    }

    #[test]
    fn one_invocation_of_128_mb_for_one_second() {
        // 0.125 GB-s at $0.0000166667 = $0.0000020833375 of compute.
        let u = Usage {
            requests: 1,
            mib_ms: 128 * 1000,
        };
        let c = u.cost(&PriceModel::default());
        assert_eq!(c.compute, usd("0.000002083338")); // rounded to the picodollar
        assert_eq!(c.requests, usd("0.0000002"));
        assert_eq!(u.gb_seconds(), 0.125);
    }

    #[test]
    fn a_million_such_invocations() {
        // 125,000 GB-s -> $2.0833375 compute + $0.20 requests = $2.2833375,
        // all inside the free tier.
        let u = Usage {
            requests: 1_000_000,
            mib_ms: 1_000_000 * 128 * 1000,
        };
        let p = PriceModel::default();
        let c = u.cost(&p);
        assert_eq!(c.compute, usd("2.0833375"));
        assert_eq!(c.requests, usd("0.20"));
        assert_eq!(c.total(), usd("2.2833375"));
        assert_eq!(u.cost_after_free_tier(&p).total(), Money(0));
    }

    #[test]
    fn free_tier_is_subtracted_once() {
        // 3M requests of 512 MB x 1 s: 1.5M GB-s, 1.1M over the free tier.
        let u = Usage {
            requests: 3_000_000,
            mib_ms: 3_000_000 * 512 * 1000,
        };
        let after = u.cost_after_free_tier(&PriceModel::default());
        assert_eq!(after.requests, usd("0.40"));
        // 1,100,000 GB-s x $0.0000166667 = $18.33337
        assert_eq!(after.compute, usd("18.33337"));
    }
}
