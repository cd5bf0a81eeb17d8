#[fnhost_guest::handler]
fn handle() -> Result<Vec<u8>, fnhost_guest::Error> {
    Ok(Vec::new())
}

fn main() {}
