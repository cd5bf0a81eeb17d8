#[fnhost_guest::handler]
fn handle(event: &[u8]) -> Result<&'static str, fnhost_guest::Error> {
    Ok(if event.is_empty() { "empty" } else { "bytes" })
}

fn main() {
    assert_eq!(handle(b"").unwrap(), "empty");
}
