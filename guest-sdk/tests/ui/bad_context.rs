#[fnhost_guest::handler]
fn handle(event: Vec<u8>, ctx: fnhost_guest::Context) -> Result<Vec<u8>, fnhost_guest::Error> {
    let _ = ctx;
    Ok(event)
}

fn main() {}
