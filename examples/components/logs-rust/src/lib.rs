//! logs-rust: a realistic transform as a Rust component. Takes
//! `{"lines": ["127.0.0.1 - - [..] \"GET /a HTTP/1.1\" 200 512", ...]}`
//! (common log format) and returns requests and bytes per status class,
//! the busiest paths, and the lines it could not parse.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

wit_bindgen::generate!({
    path: "../../../wit",
    world: "fnhost:function/handler",
});

#[derive(Deserialize)]
struct Request {
    lines: Vec<String>,
}

#[derive(Serialize, Default)]
struct Class {
    requests: u64,
    bytes: u64,
}

#[derive(Serialize)]
struct Summary {
    by_status: BTreeMap<String, Class>,
    top_paths: Vec<(String, u64)>,
    unparsed: Vec<usize>,
}

/// (path, status, bytes) of one common-log-format line.
fn parse(line: &str) -> Option<(&str, u16, u64)> {
    let request = line.split('"').nth(1)?;
    let path = request.split_whitespace().nth(1)?;
    let mut tail = line.rsplit('"').next()?.split_whitespace();
    let status = tail.next()?.parse().ok()?;
    let bytes = match tail.next()? {
        "-" => 0,
        n => n.parse().ok()?,
    };
    Some((path, status, bytes))
}

struct Logs;

impl Guest for Logs {
    fn handle(event: Vec<u8>) -> Result<Vec<u8>, Error> {
        let req: Request = serde_json::from_slice(&event).map_err(|e| Error {
            kind: "InvalidRequest".into(),
            message: e.to_string(),
        })?;
        let mut by_status: BTreeMap<String, Class> = BTreeMap::new();
        let mut paths: BTreeMap<&str, u64> = BTreeMap::new();
        let mut unparsed = Vec::new();
        for (i, line) in req.lines.iter().enumerate() {
            match parse(line) {
                Some((path, status, bytes)) => {
                    let c = by_status.entry(format!("{}xx", status / 100)).or_default();
                    c.requests += 1;
                    c.bytes += bytes;
                    *paths.entry(path).or_default() += 1;
                }
                None => unparsed.push(i),
            }
        }
        let mut top_paths: Vec<(String, u64)> =
            paths.into_iter().map(|(p, n)| (p.to_string(), n)).collect();
        top_paths.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top_paths.truncate(3);
        eprintln!("{} lines, {} unparsed", req.lines.len(), unparsed.len());
        let summary = Summary {
            by_status,
            top_paths,
            unparsed,
        };
        serde_json::to_vec(&summary).map_err(|e| Error {
            kind: "Internal".into(),
            message: e.to_string(),
        })
    }
}

export!(Logs);
