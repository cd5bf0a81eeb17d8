//! The `fnhost:function` imports a component gets (context and
//! capabilities, `wit/function.wit`), implemented on the store's
//! [`State`] exactly as ABI v1's `fnhost_v1` functions are.

use super::super::hostcalls::{Answer, call_capability};
use super::super::state::State;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "fnhost:function/handler",
    imports: {
        // The deadline can pass during a capability: the invocation ends.
        "fnhost:function/capabilities.call": trappable,
    },
});

pub(crate) use self::fnhost::function::capabilities::HostError;
pub(crate) use self::fnhost::function::types::Error as GuestError;

impl self::fnhost::function::types::Host for State {}

impl self::fnhost::function::context::Host for State {
    fn request_id(&mut self) -> String {
        self.call.request_id.to_string()
    }

    fn function_name(&mut self) -> String {
        self.spec.name.to_string()
    }

    fn function_version(&mut self) -> String {
        self.call
            .version
            .as_deref()
            .unwrap_or(crate::target::LATEST)
            .to_string()
    }

    fn memory_limit(&mut self) -> u64 {
        self.spec.memory_limit
    }

    fn timeout_ns(&mut self) -> u64 {
        self.spec.timeout.as_nanos() as u64
    }

    fn remaining_ns(&mut self) -> u64 {
        self.call
            .deadline
            .saturating_duration_since(std::time::Instant::now())
            .as_nanos() as u64
    }

    fn event(&mut self) -> Option<self::fnhost::function::context::EventInfo> {
        let (id, attempt) = self.call.event.as_ref()?.event()?;
        Some(self::fnhost::function::context::EventInfo {
            id: id.to_string(),
            attempt,
        })
    }

    fn client_context(&mut self) -> Option<String> {
        let c = self.call.event.as_ref()?.client_context.as_deref()?;
        Some(c.to_string())
    }
}

impl self::fnhost::function::capabilities::Host for State {
    fn call(
        &mut self,
        name: String,
        request: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, HostError>> {
        // wasi:http requests count against the same budget.
        self.sync_http();
        Ok(match call_capability(self, name.as_bytes(), &request)? {
            Answer::Ok(bytes) => Ok(bytes),
            Answer::Failed { kind, message } => {
                Err(HostError::Failed(GuestError { kind, message }))
            }
            Answer::Denied(msg) => Err(HostError::Denied(msg)),
            Answer::Limit(msg) => Err(HostError::Limit(msg)),
        })
    }
}
