#[fnhost_guest::handler]
fn handle(event: Vec<u8>, ctx: &fnhost_guest::Context, extra: u32) -> Result<Vec<u8>, fnhost_guest::Error> {
    let _ = (ctx, extra);
    Ok(event)
}

fn main() {}
