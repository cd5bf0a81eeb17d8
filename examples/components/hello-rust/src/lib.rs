//! hello-rust: an fnhost function as a Rust component (`wasm32-wasip2`,
//! world `fnhost:function/handler`), with typed JSON in and out.
//! Build: `fnhost build examples/components/hello-rust`; run:
//! `fnhost invoke <printed path> --payload '{"name":"you"}'`.

use serde::{Deserialize, Serialize};

wit_bindgen::generate!({
    path: "../../../wit",
    world: "fnhost:function/handler",
});

use fnhost::function::context;

#[derive(Deserialize)]
struct Request {
    name: String,
}

#[derive(Serialize)]
struct Response {
    message: String,
    language: &'static str,
}

fn error(kind: &str, message: impl Into<String>) -> Error {
    Error {
        kind: kind.into(),
        message: message.into(),
    }
}

struct Hello;

impl Guest for Hello {
    fn handle(event: Vec<u8>) -> Result<Vec<u8>, Error> {
        let req: Request =
            serde_json::from_slice(&event).map_err(|e| error("InvalidRequest", e.to_string()))?;
        if req.name.is_empty() {
            return Err(error("InvalidRequest", "name must be a non-empty string"));
        }
        println!("request {}: greeting {}", context::request_id(), req.name);
        let resp = Response {
            message: format!("Hello, {}!", req.name),
            language: "rust",
        };
        serde_json::to_vec(&resp).map_err(|e| error("Internal", e.to_string()))
    }
}

export!(Hello);
