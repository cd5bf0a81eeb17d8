//! The long soak: `cargo xtask soak` (1,000,000 invocations by default;
//! `cargo xtask soak -- 50000` for fewer). Prints the report that
//! RELIABILITY.md quotes and exits non-zero if any rule was broken.

fn main() -> anyhow::Result<()> {
    let invocations = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |a| a.parse())?;
    let report = fnhost_hostile::soak::run(fnhost_hostile::soak::SoakConfig {
        invocations,
        workers: 2,
        batch: 256,
    })?;
    println!("{report}");
    let ok = report.lost() == 0
        && report.wrong.is_empty()
        && report.unaccounted == 0
        && report.in_flight == 0
        && report.live_instances == 0;
    anyhow::ensure!(ok, "the soak broke a rule (see above)");
    Ok(())
}
