//! `hello`: a typed JSON handler that greets, logs, and reads its
//! environment and context.

use fnhost_guest::{Context, Error};
use serde::{Deserialize, Serialize};

/// The event: who to greet.
#[derive(Deserialize)]
pub struct Greet {
    /// Name to greet; must not be empty.
    pub name: String,
}

/// The answer.
#[derive(Serialize)]
pub struct Greeting {
    /// `"<GREETING>, <name>!"`
    pub message: String,
    /// The function name, from the context.
    pub function: String,
}

/// Greets `name` with the `GREETING` environment variable (default "Hello").
#[fnhost_guest::handler]
pub fn hello(event: Greet, ctx: &Context) -> Result<Greeting, Error> {
    if event.name.trim().is_empty() {
        return Err(Error::new("InvalidName", "name must not be empty"));
    }
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
    println!("greeting {} (request {})", event.name, ctx.request_id());
    Ok(Greeting {
        message: format!("{greeting}, {}!", event.name),
        function: ctx.function_name(),
    })
}
