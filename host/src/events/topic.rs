//! Topics: one publish reaches each subscriber once (SNS-style fan-out),
//! optionally filtered on message attributes with an SNS filter policy.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;

use super::clock::ms;
use super::shapes;
use super::store::{Counter, EventRecord, Op};
use super::{Events, Shared, queue};
use crate::error::{Error, Result};

/// A topic subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    endpoint: Endpoint,
    filter: Option<Vec<(String, Vec<Condition>)>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Endpoint {
    /// Event invocation with an SNS event.
    Function(String),
    /// A queue message whose body is the SNS notification.
    Queue(String),
}

/// One condition of a filter policy's attribute list.
#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Equals(String),
    Number(f64),
    Prefix(String),
    Suffix(String),
    AnythingBut(Vec<String>),
    Exists(bool),
    Numeric(Vec<(String, f64)>),
}

impl Subscription {
    /// Each publish becomes an event invocation of `target` with an SNS
    /// event (`{"Records": [{"Sns": {...}}]}`).
    pub fn function(target: &str) -> Subscription {
        Subscription {
            endpoint: Endpoint::Function(target.to_string()),
            filter: None,
        }
    }

    /// Each publish becomes a message on `queue` whose body is the SNS
    /// notification JSON.
    pub fn queue(queue: &str) -> Subscription {
        Subscription {
            endpoint: Endpoint::Queue(queue.to_string()),
            filter: None,
        }
    }

    /// Delivers only messages whose attributes match an SNS filter policy
    /// (JSON): every key must match; within a key's list any condition
    /// may. Conditions: a string (equal), a number (numerically equal),
    /// `{"prefix": s}`, `{"suffix": s}`, `{"anything-but": s | [s, ...]}`,
    /// `{"exists": bool}`, `{"numeric": [op, n, (op, n)]}` with ops
    /// `=`, `<`, `<=`, `>`, `>=`.
    pub fn filter_policy(mut self, policy: &str) -> Result<Subscription> {
        self.filter = Some(parse_policy(policy)?);
        Ok(self)
    }

    fn matches(&self, attributes: &BTreeMap<String, String>) -> bool {
        let Some(policy) = &self.filter else {
            return true;
        };
        policy.iter().all(|(key, conds)| {
            let value = attributes.get(key);
            conds.iter().any(|c| condition_matches(c, value))
        })
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::config("filter_policy", reason)
}

fn parse_policy(policy: &str) -> Result<Vec<(String, Vec<Condition>)>> {
    let v: Value = serde_json::from_str(policy).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Value::Object(map) = v else {
        return Err(bad("must be a JSON object"));
    };
    if map.is_empty() || map.len() > 5 {
        return Err(bad("must name 1 to 5 attributes (as SNS)"));
    }
    map.into_iter()
        .map(|(k, v)| {
            let Value::Array(items) = v else {
                return Err(bad(format!("`{k}` must map to a list of conditions")));
            };
            if items.is_empty() {
                return Err(bad(format!("`{k}` has no conditions")));
            }
            let conds = items.iter().map(parse_condition).collect::<Result<_>>()?;
            Ok((k, conds))
        })
        .collect()
}

fn parse_condition(v: &Value) -> Result<Condition> {
    Ok(match v {
        Value::String(s) => Condition::Equals(s.clone()),
        Value::Number(n) => Condition::Number(n.as_f64().unwrap_or(f64::NAN)),
        Value::Object(o) if o.len() == 1 => {
            let (op, arg) = o.iter().next().ok_or_else(|| bad("empty condition"))?;
            match (op.as_str(), arg) {
                ("prefix", Value::String(s)) => Condition::Prefix(s.clone()),
                ("suffix", Value::String(s)) => Condition::Suffix(s.clone()),
                ("exists", Value::Bool(b)) => Condition::Exists(*b),
                ("anything-but", Value::String(s)) => Condition::AnythingBut(vec![s.clone()]),
                ("anything-but", Value::Array(a)) => Condition::AnythingBut(
                    a.iter()
                        .map(|x| match x {
                            Value::String(s) => Ok(s.clone()),
                            Value::Number(n) => Ok(n.to_string()),
                            _ => Err(bad("anything-but takes strings or numbers")),
                        })
                        .collect::<Result<_>>()?,
                ),
                ("numeric", Value::Array(a)) if a.len() == 2 || a.len() == 4 => {
                    let mut pairs = Vec::new();
                    for pair in a.chunks(2) {
                        let op = pair[0].as_str().unwrap_or_default();
                        if !["=", "<", "<=", ">", ">="].contains(&op) {
                            return Err(bad(format!("unknown numeric operator {}", pair[0])));
                        }
                        let n = pair[1]
                            .as_f64()
                            .ok_or_else(|| bad("numeric needs a number after each operator"))?;
                        pairs.push((op.to_string(), n));
                    }
                    Condition::Numeric(pairs)
                }
                (op, _) => return Err(bad(format!("unsupported condition `{op}`"))),
            }
        }
        other => return Err(bad(format!("unsupported condition {other}"))),
    })
}

fn condition_matches(c: &Condition, value: Option<&String>) -> bool {
    match (c, value) {
        (Condition::Exists(want), v) => v.is_some() == *want,
        (_, None) => false,
        (Condition::Equals(s), Some(v)) => v == s,
        (Condition::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
        (Condition::Suffix(p), Some(v)) => v.ends_with(p.as_str()),
        (Condition::AnythingBut(list), Some(v)) => !list.contains(v),
        (Condition::Number(n), Some(v)) => v.trim().parse::<f64>().is_ok_and(|x| x == *n),
        (Condition::Numeric(pairs), Some(v)) => v.trim().parse::<f64>().is_ok_and(|x| {
            pairs.iter().all(|(op, n)| match op.as_str() {
                "=" => x == *n,
                "<" => x < *n,
                "<=" => x <= *n,
                ">" => x > *n,
                _ => x >= *n,
            })
        }),
    }
}

/// What [`Events::publish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The message id (a UUID).
    pub message_id: String,
    /// Subscribers the message was delivered to.
    pub delivered: usize,
    /// Subscribers whose filter policy skipped it.
    pub filtered: usize,
}

/// The writes for one publish: one event or message per matching
/// subscriber, all in the caller's commit.
pub(crate) fn publish_ops(
    sh: &Shared,
    topic: &str,
    message: &str,
    attributes: &BTreeMap<String, String>,
    now_ms: u64,
) -> Result<(Vec<Op>, Published)> {
    let topics = sh.topics.read();
    let subs = topics.get(topic).ok_or_else(|| Error::NoSuch {
        what: "topic",
        name: topic.to_string(),
    })?;
    let message_id = sh.core.next_request_id().to_string();
    let notification = shapes::sns_notification(topic, &message_id, message, attributes, now_ms);
    let mut ops = Vec::new();
    let (mut delivered, mut filtered) = (0, 0);
    for (sub_id, sub) in subs {
        if !sub.matches(attributes) {
            filtered += 1;
            continue;
        }
        delivered += 1;
        match &sub.endpoint {
            Endpoint::Function(target) => {
                let payload = shapes::sns_event(topic, *sub_id, notification.clone());
                ops.push(Op::InsertEvent(
                    // One id per (message, subscriber): a re-published
                    // message id never reaches a subscriber twice.
                    EventRecord::fresh(
                        format!("{message_id}/{sub_id}"),
                        target.clone(),
                        format!("topic:{topic}"),
                        now_ms,
                    ),
                    Bytes::from(payload.to_string()),
                ));
            }
            Endpoint::Queue(q) => ops.push(queue::push_op(
                sh,
                q,
                shapes::sns_queue_body(notification.clone()).to_string(),
                BTreeMap::new(),
                now_ms,
            )),
        }
    }
    ops.push(Op::Count(Counter::Published, 1));
    ops.push(Op::Count(Counter::Deliveries, delivered as u64));
    ops.push(Op::Count(Counter::Filtered, filtered as u64));
    Ok((
        ops,
        Published {
            message_id,
            delivered,
            filtered,
        },
    ))
}

impl Events {
    /// Creates a topic (no-op if it exists). Subscriptions live in memory:
    /// the embedder sets them up at each start.
    pub fn create_topic(&self, name: &str) -> Result<()> {
        if name.is_empty() || name.len() > 256 || name.contains(':') {
            return Err(Error::config(
                "topic",
                "a topic name is 1 to 256 characters without `:`",
            ));
        }
        self.sh.topics.write().entry(name.to_string()).or_default();
        Ok(())
    }

    /// Subscribes to `topic`; returns the subscription number. The
    /// endpoint (function or queue) must exist.
    pub fn subscribe(&self, topic: &str, sub: Subscription) -> Result<u64> {
        match &sub.endpoint {
            Endpoint::Function(t) => {
                self.sh.core.registry.resolve(t)?;
            }
            Endpoint::Queue(q) => {
                if !self.sh.queues.read().contains_key(q) {
                    return Err(Error::NoSuch {
                        what: "queue",
                        name: q.to_string(),
                    });
                }
            }
        }
        let id = self
            .sh
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sh
            .topics
            .write()
            .get_mut(topic)
            .ok_or_else(|| Error::NoSuch {
                what: "topic",
                name: topic.to_string(),
            })?
            .push((id, sub));
        Ok(id)
    }

    /// Publishes `message`: every subscriber whose filter matches gets it
    /// once, all committed together before this returns.
    pub fn publish(
        &self,
        topic: &str,
        message: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<Published> {
        if self.sh.stopping.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        if message.len() > queue::MAX_MESSAGE_BYTES {
            return Err(Error::PayloadTooLarge {
                size: message.len(),
                max: queue::MAX_MESSAGE_BYTES,
            });
        }
        let (ops, published) = publish_ops(
            &self.sh,
            topic,
            message,
            &attributes,
            ms(self.sh.clock.now()),
        )?;
        self.sh.store.apply(ops)?;
        self.sh.signal.bump();
        Ok(published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filter_policies_match_like_sns() {
        let s = Subscription::function("f")
            .filter_policy(
                r#"{"store": ["north", {"prefix": "so"}], "price": [{"numeric": [">=", 10, "<", 20]}]}"#,
            )
            .unwrap();
        assert!(s.matches(&attrs(&[("store", "north"), ("price", "10")])));
        assert!(s.matches(&attrs(&[("store", "south"), ("price", "19.5")])));
        assert!(!s.matches(&attrs(&[("store", "east"), ("price", "15")])));
        assert!(!s.matches(&attrs(&[("store", "north"), ("price", "20")])));
        assert!(!s.matches(&attrs(&[("store", "north")])));
        let s = Subscription::function("f")
            .filter_policy(r#"{"kind": [{"anything-but": ["test"]}], "tag": [{"exists": false}]}"#)
            .unwrap();
        assert!(s.matches(&attrs(&[("kind", "live")])));
        assert!(!s.matches(&attrs(&[("kind", "test")])));
        assert!(!s.matches(&attrs(&[("kind", "live"), ("tag", "x")])));
    }

    #[test]
    fn bad_policies_are_refused_with_the_field() {
        for p in [
            "[]",
            "{}",
            r#"{"a": "x"}"#,
            r#"{"a": [{"regex": "x"}]}"#,
            r#"{"a": [{"numeric": ["!", 1]}]}"#,
            "nope",
        ] {
            let e = Subscription::function("f").filter_policy(p).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::InvalidConfig {
                        field: "filter_policy",
                        ..
                    }
                ),
                "{p}: {e}"
            );
        }
    }
}
