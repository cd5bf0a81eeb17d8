//! CI-sized soak: 20,000 mixed normal and hostile invocations on 2
//! workers (HOSTILE row 28). Every outcome is the one its kind must get,
//! none is lost, counters add up, pool slots are all returned, RSS stays
//! flat after warm-up.

use fnhost_hostile::soak::{SoakConfig, run};

#[test]
fn twenty_thousand_mixed_invocations() {
    let r = run(SoakConfig {
        invocations: 20_000,
        workers: 2,
        batch: 256,
    })
    .unwrap();
    println!("{r}");
    assert_eq!(r.submitted, 20_000);
    assert_eq!(r.lost(), 0);
    assert!(r.wrong.is_empty(), "{:#?}", r.wrong);
    assert_eq!(r.by_kind.values().sum::<u64>(), 20_000);
    assert_eq!(r.unaccounted, 0);
    assert_eq!((r.in_flight, r.live_instances), (0, 0));
    // Every hostile kind actually happened.
    for kind in [
        "ok",
        "guest_error",
        "out_of_memory",
        "trap",
        "output_too_large",
        "timeout",
        "payload_too_large",
        "not_found",
        "abi_violation",
        "internal",
    ] {
        assert!(
            r.by_kind.get(kind).is_some_and(|n| *n > 0),
            "no {kind} in {:?}",
            r.by_kind
        );
    }
    // Flat after warm-up: the last 90 % added less than 64 MiB.
    assert!(
        r.rss_end < r.rss_warm + (64 << 20),
        "RSS grew from {} to {}",
        r.rss_warm,
        r.rss_end
    );
}
