#[fnhost_guest::init]
fn setup(x: u32) -> Result<(), fnhost_guest::Error> {
    let _ = x;
    Ok(())
}

fn main() {}
