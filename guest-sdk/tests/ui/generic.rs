#[fnhost_guest::handler]
fn handle<T>(event: Vec<u8>) -> Result<Vec<u8>, fnhost_guest::Error> {
    Ok(event)
}

fn main() {}
