#[fnhost_guest::handler]
fn handle(event: Vec<u8>) -> Vec<u8> {
    event
}

fn main() {}
