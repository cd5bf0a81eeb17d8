//! The base URL a `fnhost serve` child prints on its first line
//! (`listening on http://…`). Included with `#[path]` as `mod listening`.

use std::io::{BufRead as _, BufReader};
use std::process::Child;

/// Reads the child's first stdout line; panics naming `who` if it is not
/// the listening line (the server did not start).
pub fn listening_base(child: &mut Child, who: &str) -> String {
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    line.trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{who} did not start: {line:?}"))
        .to_string()
}
