//! Scheduled triggers: EventBridge-style `rate(...)` and `cron(...)`
//! expressions, driven by the event clock (so tests move time by hand).

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::clock::ms;
use super::shapes;
use super::{EventSource, SourceContext};
use crate::error::{Error, Result};

/// When a [`Schedule`] fires.
#[derive(Debug, Clone)]
pub enum ScheduleExpr {
    /// Every period, on multiples of the period since the Unix epoch
    /// (`rate(5 minutes)` fires at :00, :05, ...; `rate(1 day)` at
    /// midnight UTC), so firings line up across restarts.
    Rate(Duration),
    /// At the times a cron expression matches (UTC).
    Cron(Box<Cron>),
}

impl FromStr for ScheduleExpr {
    type Err = Error;

    /// Parses, as EventBridge does:
    /// - `rate(5 minutes)`: value and unit `minute(s)`, `hour(s)`,
    ///   `day(s)` (fnhost also takes `second(s)`);
    /// - `cron(0 12 * * ? *)`: AWS's six fields, minutes hours
    ///   day-of-month month day-of-week year, with `?`, `L`, `W`, `#` and
    ///   day-of-week 1-7 = SUN-SAT;
    /// - a plain five-field POSIX cron line (`*/5 * * * *`).
    fn from_str(s: &str) -> Result<ScheduleExpr> {
        let bad = |why: String| Error::config("schedule", why);
        let s = s.trim();
        if let Some(inner) = s.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            let mut parts = inner.split_whitespace();
            let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(format!("`{s}`: expected rate(<value> <unit>)")));
            };
            let n: u64 =
                n.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                    bad(format!("`{s}`: the value must be a positive whole number"))
                })?;
            let unit_secs = match unit {
                "second" | "seconds" => 1,
                "minute" | "minutes" => 60,
                "hour" | "hours" => 3600,
                "day" | "days" => 86_400,
                other => return Err(bad(format!("`{s}`: unknown unit `{other}`"))),
            };
            return Ok(ScheduleExpr::Rate(Duration::from_secs(
                n.checked_mul(unit_secs)
                    .ok_or_else(|| bad(format!("`{s}`: too long")))?,
            )));
        }
        let (pattern, aws) = match s.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
            Some(inner) => (inner, true),
            None => (s, false),
        };
        let fields = pattern.split_whitespace().count();
        let parser = if aws {
            if fields != 6 {
                return Err(bad(format!(
                    "`{s}`: AWS cron has six fields (minutes hours day-of-month month day-of-week year)"
                )));
            }
            CronParser::builder()
                .seconds(Seconds::Required)
                .year(Year::Required)
                .alternative_weekdays(true)
                .build()
        } else {
            if fields != 5 {
                return Err(bad(format!(
                    "`{s}`: expected rate(...), cron(...) or a five-field cron line"
                )));
            }
            CronParser::builder()
                .seconds(Seconds::Disallowed)
                .year(Year::Disallowed)
                .build()
        };
        // croner takes years only after a seconds field.
        let full = if aws {
            format!("0 {pattern}")
        } else {
            pattern.to_string()
        };
        let cron = parser
            .parse(&full)
            .map_err(|e| bad(format!("`{s}`: {e}")))?;
        Ok(ScheduleExpr::Cron(Box::new(cron)))
    }
}

impl ScheduleExpr {
    /// The first firing strictly after `t`.
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        match self {
            ScheduleExpr::Rate(period) => {
                let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                let n = since.as_millis() / period.as_millis() + 1;
                let at = u64::try_from(period.as_millis() * n).ok()?;
                Some(SystemTime::UNIX_EPOCH + Duration::from_millis(at))
            }
            ScheduleExpr::Cron(cron) => {
                let at = chrono::DateTime::<chrono::Utc>::from(t);
                cron.find_next_occurrence(&at, false)
                    .ok()
                    .map(SystemTime::from)
            }
        }
    }
}

/// A scheduled trigger (an EventBridge rule): at each firing it sends an
/// event to its target, by default an EventBridge "Scheduled Event".
///
/// Each firing's event id is derived from the rule name and the firing
/// time, so a firing sent twice is stored once. Every firing after the
/// schedule was added is sent, in order, even when the clock jumps over
/// several; firings missed while the host was down are not made up (as
/// EventBridge).
#[derive(Debug, Clone)]
pub struct Schedule {
    rule: String,
    expr: ScheduleExpr,
    target: String,
    input: Option<String>,
}

impl Schedule {
    /// A rule named `rule` firing at `expr` (see [`ScheduleExpr`]) into
    /// `target`.
    pub fn new(rule: &str, expr: &str, target: &str) -> Result<Schedule> {
        if rule.is_empty() || rule.len() > 64 {
            return Err(Error::config("rule", "must be 1 to 64 characters"));
        }
        Ok(Schedule {
            rule: rule.to_string(),
            expr: expr.parse()?,
            target: target.to_string(),
            input: None,
        })
    }

    /// A constant payload instead of the Scheduled Event (EventBridge's
    /// "constant input").
    pub fn input(mut self, json: impl Into<String>) -> Self {
        self.input = Some(json.into());
        self
    }
}

impl EventSource for Schedule {
    fn run(&mut self, ctx: &SourceContext) -> Result<()> {
        let mut next = self.expr.next_after(ctx.added_at());
        while let Some(at) = next {
            if !ctx.wait_until(at) {
                return Ok(());
            }
            let at_ms = ms(at);
            let id = format!(
                "{}",
                crate::report::RequestId(u128::from_le_bytes(
                    blake3::hash(format!("schedule/{}/{at_ms}", self.rule).as_bytes()).as_bytes()
                        [..16]
                        .try_into()
                        .unwrap_or_default()
                ))
            );
            let payload = match &self.input {
                Some(input) => input.clone(),
                None => shapes::scheduled_event(&id, &self.rule, at_ms).to_string(),
            };
            if let Err(e) = ctx.events().send_with_id(
                &id,
                &self.target,
                payload.into_bytes(),
                &format!("schedule:{}", self.rule),
            ) {
                if matches!(e, Error::ShuttingDown) {
                    return Ok(());
                }
                tracing::warn!(target: "fnhost::events", rule = %self.rule, error = %e,
                    "scheduled event refused");
            }
            next = self.expr.next_after(at);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().into()
    }

    #[test]
    fn rates_fire_on_multiples_of_their_period() {
        let e: ScheduleExpr = "rate(5 minutes)".parse().unwrap();
        let t0 = at("2026-01-01T00:00:00Z");
        assert_eq!(e.next_after(t0), Some(at("2026-01-01T00:05:00Z")));
        assert_eq!(
            e.next_after(at("2026-01-01T00:07:00Z")),
            Some(at("2026-01-01T00:10:00Z"))
        );
        let e: ScheduleExpr = "rate(1 day)".parse().unwrap();
        assert_eq!(
            e.next_after(at("2026-01-01T13:00:00Z")),
            Some(at("2026-01-02T00:00:00Z"))
        );
    }

    #[test]
    fn aws_cron_has_six_fields_and_sunday_is_one() {
        // 12:00 UTC every Monday (2 = MON in AWS's numbering).
        let e: ScheduleExpr = "cron(0 12 ? * 2 *)".parse().unwrap();
        // 2026-11-27 is a Friday.
        let t = at("2026-11-27T13:00:00Z");
        assert_eq!(e.next_after(t), Some(at("2026-11-30T12:00:00Z")));
        let e: ScheduleExpr = "cron(15 10 ? * MON-FRI 2027)".parse().unwrap();
        assert_eq!(e.next_after(t), Some(at("2027-01-01T10:15:00Z")));
        let e: ScheduleExpr = "*/15 * * * *".parse().unwrap();
        assert_eq!(e.next_after(t), Some(at("2026-11-27T13:15:00Z")));
    }

    #[test]
    fn bad_expressions_name_the_field() {
        for s in [
            "rate(0 minutes)",
            "rate(5 fortnights)",
            "rate(five minutes)",
            "cron(0 12 * * ?)",
            "cron(61 12 * * ? *)",
            "every day",
        ] {
            let e = s.parse::<ScheduleExpr>().unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::InvalidConfig {
                        field: "schedule",
                        ..
                    }
                ),
                "{s}: {e}"
            );
        }
    }
}
