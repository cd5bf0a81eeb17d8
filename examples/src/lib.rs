//! Helpers shared by the fnhost host examples.

#![deny(missing_docs)]

use fnhost::Invocation;

/// Prints an invocation as Lambda would log it: START, the guest's logs
/// (control characters escaped), the result or error, END and REPORT.
pub fn print_invocation(inv: &Invocation, show: impl FnOnce(&[u8]) -> String) {
    let r = &inv.report;
    println!("== {}", r.function);
    println!("{}", r.start_line());
    let logs = inv.logs.to_display_string();
    if !logs.is_empty() {
        print!("{logs}");
        if !logs.ends_with('\n') {
            println!();
        }
    }
    match inv.output() {
        Ok(out) => println!("result: {}", show(out)),
        Err(e) => println!("error ({}): {e}", e.kind().as_str()),
    }
    println!("{}", r.end_line());
    println!("{}\n", r.report_line());
}

/// One line per thumbnail from the thumbnail guest's JSON output.
pub fn summarize_thumbnails(out: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(out) else {
        return format!("{} bytes (not JSON)", out.len());
    };
    let thumbs: Vec<String> = v["thumbnails"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    let png = t["png_base64"].as_str().map_or(0, |s| s.len() * 3 / 4);
                    format!("{}x{} (~{png} B PNG)", t["width"], t["height"])
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "source {} {}x{} -> {}",
        v["source"]["format"],
        v["source"]["width"],
        v["source"]["height"],
        thumbs.join(", ")
    )
}
