//! The dispatcher: starts due events through the runtime's admission,
//! settles finished attempts in one commit each, retries, gives up and
//! delivers to destinations.

use super::*;

/// Why an event leaves the store without succeeding (Lambda's
/// `condition` in the invocation record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GiveUp {
    /// Every retry failed.
    RetriesExhausted,
    /// Older than the function's maximum event age.
    EventAgeExceeded,
    /// Bigger than the function accepts (it can never run).
    PayloadTooLarge,
}

impl GiveUp {
    /// The condition as Lambda writes it.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            GiveUp::RetriesExhausted => "RetriesExhausted",
            GiveUp::EventAgeExceeded => "EventAgeExceeded",
            GiveUp::PayloadTooLarge => "PayloadTooLarge",
        }
    }
}

pub(super) fn dead_letter(d: DeadRecord, payload: Bytes) -> DeadLetter {
    DeadLetter {
        id: d.event.id,
        target: d.event.target,
        source: d.event.source,
        payload,
        condition: d.condition,
        attempts: d.event.attempts,
        error: d.event.last_error,
        record: d.record,
        accepted_at: from_ms(d.event.accepted_ms),
        dead_at: from_ms(d.dead_ms),
    }
}

/// Is this error the function's own failure (an attempt that counts)?
pub(super) fn is_function_error(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Timeout
            | ErrorKind::OutOfMemory
            | ErrorKind::OutOfFuel
            | ErrorKind::Trap
            | ErrorKind::Guest
            | ErrorKind::OutputTooLarge
            | ErrorKind::AbiViolation
            | ErrorKind::Instantiate
            | ErrorKind::Internal
    )
}

pub(super) fn error_record(e: &Error) -> ErrorRecord {
    match e {
        Error::Guest { kind, message } => ErrorRecord {
            kind: kind.clone(),
            message: message.clone(),
        },
        other => ErrorRecord {
            kind: other.kind().as_str().to_string(),
            message: other.to_string(),
        },
    }
}

impl Shared {
    pub(super) fn function_name(target: &str) -> &str {
        crate::target::FunctionRef::parse(target).name
    }

    pub(super) fn config_for(&self, target: &str) -> EventConfig {
        self.configs
            .read()
            .get(Self::function_name(target))
            .cloned()
            .unwrap_or_default()
    }

    /// The dispatcher: records finished attempts, starts due events, and
    /// sleeps until the next is due or something changes.
    pub(super) fn dispatch_loop(self: Arc<Self>) {
        let mut in_flight: HashSet<String> = HashSet::new();
        let waker = std::task::Waker::from(self.signal.clone());
        loop {
            let seen = self.signal.current();
            let done: Vec<Done> = self.completions.1.try_iter().collect();
            if !done.is_empty() {
                // The dispatcher's unwind boundary (HOSTILE 30): a bug
                // while recording outcomes costs those records, not the
                // dispatcher. Their events stay stored as they were and
                // run again (a retry, as after any failure).
                for d in &done {
                    in_flight.remove(&d.rec.id);
                }
                if crate::fault::catch("recording event outcomes", || self.settle(done)).is_err() {
                    let _ = self
                        .store
                        .apply(vec![Op::Count(Counter::InternalErrors, 1)]);
                }
                // Only once the outcomes are stored: waiters never see an
                // idle system before its results.
                self.in_flight.store(in_flight.len(), Ordering::Release);
                self.signal.bump();
            }
            let stopping = self.stopping.load(Ordering::Acquire) || self.core.is_shutting_down();
            if stopping && (in_flight.is_empty() || self.halt.load(Ordering::Acquire)) {
                return;
            }
            let mut blocked = HashSet::new();
            if !stopping {
                let _ = crate::fault::catch("dispatching events", || {
                    self.dispatch_due(&mut in_flight, &mut blocked, &waker)
                });
            }
            let next = if stopping || in_flight.len() >= self.max_in_flight {
                None
            } else {
                match self.store.next_due(&in_flight, &blocked) {
                    Ok(t) => t.map(from_ms),
                    Err(e) => {
                        tracing::error!(target: "fnhost::events", error = %e, "reading the event store");
                        Some(self.clock.now() + Duration::from_secs(1))
                    }
                }
            };
            self.signal.wait(&*self.clock, seen, next, None);
        }
    }

    /// Starts as many due events as capacity allows.
    pub(super) fn dispatch_due(
        &self,
        in_flight: &mut HashSet<String>,
        blocked: &mut HashSet<String>,
        waker: &std::task::Waker,
    ) {
        loop {
            let free = self.max_in_flight.saturating_sub(in_flight.len());
            if free == 0 {
                return;
            }
            let now = self.clock.now();
            let due = match self.store.due(ms(now), free * 2 + 8, in_flight, blocked) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(target: "fnhost::events", error = %e, "reading the event store");
                    return;
                }
            };
            if due.is_empty() {
                return;
            }
            let mut started_or_blocked = false;
            for (rec, payload) in due {
                if in_flight.len() >= self.max_in_flight {
                    return;
                }
                if blocked.contains(&rec.target) {
                    continue;
                }
                started_or_blocked = true;
                self.dispatch_one(rec, payload, now, in_flight, blocked, waker);
            }
            if !started_or_blocked {
                return;
            }
        }
    }

    pub(super) fn dispatch_one(
        &self,
        rec: EventRecord,
        payload: Bytes,
        now: SystemTime,
        in_flight: &mut HashSet<String>,
        blocked: &mut HashSet<String>,
        waker: &std::task::Waker,
    ) {
        let cfg = self.config_for(&rec.target);
        let target = rec.target.clone();
        let now_ms = ms(now);
        let expires = cfg.expiry(rec.accepted_ms);
        let ops = if now_ms > expires {
            self.give_up(rec, &payload, GiveUp::EventAgeExceeded, &cfg, None, now_ms)
        } else {
            match self.core.registry.resolve(&rec.target) {
                Err(_) => self.wait_again(rec, &cfg, now_ms, expires, &payload),
                Ok((f, version)) => {
                    // The runtime's admission order: checks, then a slot.
                    match self.core.check(&f, payload.len()) {
                        Ok(()) => {}
                        Err(Error::ShuttingDown) => {
                            // Stays stored for the next start; skip it now.
                            blocked.insert(rec.target);
                            return;
                        }
                        Err(e) => {
                            let e = self.core.refused(&f, e);
                            let ops = self.give_up(
                                EventRecord {
                                    last_error: Some(error_record(&e)),
                                    ..rec
                                },
                                &payload,
                                GiveUp::PayloadTooLarge,
                                &cfg,
                                None,
                                now_ms,
                            );
                            if !self.commit(ops) {
                                blocked.insert(target);
                            }
                            return;
                        }
                    }
                    let until = Instant::now() + Duration::from_secs(60);
                    let permit = match self.core.acquire(&f, Wait::Poll { waker, until }) {
                        Slot::Got(permit) => permit,
                        Slot::Pending | Slot::Full => {
                            blocked.insert(rec.target);
                            return;
                        }
                    };
                    self.core.admitted(&f);
                    in_flight.insert(rec.id.clone());
                    self.in_flight.store(in_flight.len(), Ordering::Release);
                    let ctx = EventCtx::of_event(&rec.id, rec.attempts + 1);
                    let tx = self.completions.0.clone();
                    let signal = self.signal.clone();
                    let job_payload = payload.clone();
                    self.core.enqueue(Job {
                        function: f,
                        version,
                        payload: job_payload,
                        permit,
                        event: Some(ctx),
                        reply: Reply::Callback(Box::new(move |result| {
                            let _ = tx.send(Done {
                                rec,
                                payload,
                                result,
                            });
                            signal.bump();
                        })),
                    });
                    return;
                }
            }
        };
        // A store that refuses the write: skip the event this round
        // rather than fetch it again at once.
        if !self.commit(ops) {
            blocked.insert(target);
        }
    }

    /// Applies `ops`; `false` (logged) if the store refused them.
    pub(super) fn commit(&self, ops: Vec<Op>) -> bool {
        if ops.is_empty() {
            return true;
        }
        let ok = match self.store.apply(ops) {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(target: "fnhost::events", error = %e, "writing the event store");
                false
            }
        };
        self.signal.bump();
        ok
    }

    /// The event waits (no capacity, function missing) and comes due
    /// again later, or is given up if that would pass its max age.
    pub(super) fn wait_again(
        &self,
        rec: EventRecord,
        cfg: &EventConfig,
        now_ms: u64,
        expires: u64,
        payload: &Bytes,
    ) -> Vec<Op> {
        let due = now_ms.saturating_add(cfg.wait_after(rec.waits).as_millis() as u64);
        if due > expires {
            return self.give_up(rec, payload, GiveUp::EventAgeExceeded, cfg, None, now_ms);
        }
        let old_due_ms = rec.due_ms;
        vec![
            Op::UpdateEvent {
                old_due_ms,
                rec: EventRecord {
                    due_ms: due,
                    waits: rec.waits + 1,
                    ..rec
                },
            },
            Op::Count(Counter::Waited, 1),
        ]
    }

    /// Records finished attempts in one commit.
    pub(super) fn settle(&self, done: Vec<Done>) {
        let now_ms = ms(self.clock.now());
        let mut ops = Vec::new();
        for Done {
            rec,
            payload,
            result,
        } in done
        {
            // Not run (shutting down): it stays pending for the next start.
            let Ok(inv) = result else {
                continue;
            };
            crate::fault::hit(
                crate::fault::Point::Settle,
                Self::function_name(&rec.target),
            );
            let cfg = self.config_for(&rec.target);
            match inv.outcome {
                Ok(out) => {
                    let mut rec = rec;
                    rec.attempts += 1;
                    ops.push(Op::DeleteEvent {
                        id: rec.id.clone(),
                        due_ms: rec.due_ms,
                    });
                    ops.push(Op::Count(Counter::Succeeded, 1));
                    if let Some(dest) = &cfg.on_success {
                        let record = shapes::invocation_record(
                            &rec,
                            &payload,
                            "Success",
                            Ok(&out),
                            &inv.report.version,
                            now_ms,
                        );
                        ops.extend(self.deliver(dest, &record, &rec).unwrap_or_default());
                    }
                }
                Err(e) if is_function_error(e.kind()) => {
                    let rec = EventRecord {
                        attempts: rec.attempts + 1,
                        last_error: Some(error_record(&e)),
                        ..rec
                    };
                    let expires = cfg.expiry(rec.accepted_ms);
                    let due =
                        now_ms.saturating_add(cfg.retry_after(rec.attempts).as_millis() as u64);
                    let condition = if rec.attempts > cfg.max_retries {
                        Some(GiveUp::RetriesExhausted)
                    } else if due > expires {
                        Some(GiveUp::EventAgeExceeded)
                    } else {
                        None
                    };
                    if let Some(condition) = condition {
                        ops.extend(self.give_up(
                            rec,
                            &payload,
                            condition,
                            &cfg,
                            Some(&inv.report.version),
                            now_ms,
                        ));
                    } else {
                        let old_due_ms = rec.due_ms;
                        ops.push(Op::UpdateEvent {
                            old_due_ms,
                            rec: EventRecord { due_ms: due, ..rec },
                        });
                        ops.push(Op::Count(Counter::Retried, 1));
                    }
                }
                // A host-side refusal after admission: wait and retry.
                Err(_) => {
                    let expires = cfg.expiry(rec.accepted_ms);
                    ops.extend(self.wait_again(rec, &cfg, now_ms, expires, &payload));
                }
            }
        }
        self.commit(ops);
    }

    /// Gives an event up: its record goes to the on-failure destination.
    pub(super) fn give_up(
        &self,
        rec: EventRecord,
        payload: &Bytes,
        condition: GiveUp,
        cfg: &EventConfig,
        version: Option<&str>,
        now_ms: u64,
    ) -> Vec<Op> {
        let err = rec.last_error.clone();
        let record = shapes::invocation_record(
            &rec,
            payload,
            condition.as_str(),
            Err(err.as_ref()),
            version.unwrap_or(crate::target::LATEST),
            now_ms,
        );
        let mut ops = vec![Op::Count(Counter::DeadLettered, 1)];
        // A destination that is gone (a topic not re-created after a
        // restart) falls back to the dead letters: nothing is lost.
        match self.deliver(&cfg.on_failure, &record, &rec) {
            Some(delivered) if cfg.on_failure != Destination::DeadLetters => {
                ops.push(Op::DeleteEvent {
                    id: rec.id.clone(),
                    due_ms: rec.due_ms,
                });
                ops.extend(delivered);
            }
            _ => ops.push(Op::Kill {
                due_ms: rec.due_ms,
                dead: DeadRecord {
                    event: rec,
                    condition: condition.as_str().to_string(),
                    dead_ms: now_ms,
                    record,
                },
            }),
        }
        ops
    }

    /// The writes that hand `record` to a destination; `None` if the
    /// destination does not exist.
    pub(super) fn deliver(
        &self,
        dest: &Destination,
        record: &serde_json::Value,
        rec: &EventRecord,
    ) -> Option<Vec<Op>> {
        let body = record.to_string();
        let source = format!("destination:{}", rec.target);
        let now = ms(self.clock.now());
        match dest {
            Destination::Function(target) => Some(vec![Op::InsertEvent(
                EventRecord::fresh(
                    self.core.next_request_id().to_string(),
                    target.clone(),
                    source,
                    now,
                ),
                Bytes::from(body),
            )]),
            Destination::Queue(q) => {
                Some(vec![queue::push_op(self, q, body, BTreeMap::new(), now)])
            }
            Destination::Topic(t) => {
                match topic::publish_ops(self, t, &body, &BTreeMap::new(), now) {
                    Ok((ops, _)) => Some(ops),
                    Err(e) => {
                        tracing::error!(target: "fnhost::events", topic = %t, error = %e, "destination topic missing");
                        None
                    }
                }
            }
            Destination::DeadLetters | Destination::Discard => Some(Vec::new()),
        }
    }
}
