// Every accepted handler shape compiles (one per module: each defines the
// same exports, so they cannot share a crate).
mod typed {
    #[derive(serde::Deserialize)]
    pub struct In { pub n: u32 }
    #[derive(serde::Serialize)]
    pub struct Out { pub twice: u32 }

    #[fnhost_guest::handler]
    pub fn handle(event: In, ctx: &fnhost_guest::Context) -> Result<Out, std::num::ParseIntError> {
        let _ = ctx.request_id();
        Ok(Out { twice: event.n * 2 })
    }

    #[fnhost_guest::init]
    pub fn setup() -> Result<(), String> {
        Ok(())
    }
}

fn main() {
    let out = typed::handle(typed::In { n: 2 }, &fnhost_guest::Context::native()).unwrap();
    assert_eq!(out.twice, 4);
    typed::setup().unwrap();
}
