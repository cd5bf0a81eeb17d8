#[fnhost_guest::handler(json)]
fn handle(event: Vec<u8>) -> Result<Vec<u8>, fnhost_guest::Error> {
    Ok(event)
}

fn main() {}
