//! The process-isolation baseline: a native echo, stdin to stdout.

use std::io::{Read, Write};

fn main() {
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf).expect("read stdin");
    std::io::stdout().write_all(&buf).expect("write stdout");
}
