struct Plain;

#[fnhost_guest::handler]
fn handle(event: Plain) -> Result<Vec<u8>, fnhost_guest::Error> {
    let _ = event;
    Ok(Vec::new())
}

fn main() {}
