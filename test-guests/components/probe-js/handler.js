// probe-js: the JavaScript twin of the `probe` test guests. Each command
// (`{"op": ...}`) exercises one rule the host must enforce on a
// componentize-js component, through the fnhost.js helper.
import { handler, ctx, call, FunctionError } from './fnhost.js';

let counter = 0;
let hold = [];

export const handle = handler((event) => {
  switch (event.op) {
    case 'echo':
      return event.data;
    case 'hello':
      console.log(`hello, ${event.name}`);
      return { greeting: `Hello, ${event.name}!` };
    case 'throw':
      throw new TypeError(event.message);
    case 'fail':
      throw new FunctionError(event.kind, event.message);
    case 'spin':
      for (;;) { counter++; }
    case 'alloc': {
      // 1 MiB buffers, touched and kept alive.
      for (let i = 0; i < event.mib; i++) {
        hold.push(new Uint8Array(1 << 20).fill(i & 0xff));
      }
      return { held: hold.length };
    }
    case 'state':
      counter += 1;
      return { counter };
    case 'print':
      for (let i = 0; i < (event.times ?? 1); i++) {
        console.log(event.text);
      }
      if (event.err_text) console.error(event.err_text);
      return 'printed';
    case 'output':
      return 'x'.repeat(event.bytes);
    case 'context':
      return {
        request_id: ctx.requestId,
        function_name: ctx.functionName,
        function_version: ctx.functionVersion,
        memory_limit: ctx.memoryLimit,
        timeout_ms: ctx.timeoutMs,
        event: ctx.event ?? null,
      };
    case 'random': {
      const b = new Uint8Array(16);
      crypto.getRandomValues(b);
      return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    }
    case 'host_call':
      try {
        return { ok: call(event.name, event.request) };
      } catch (e) {
        return { err: e.kind, message: e.message, error: e.error ?? null };
      }
    case 'fetch':
      return (async () => {
        try {
          const init = { method: event.method ?? 'GET' };
          if (event.body !== undefined) init.body = event.body;
          const r = await fetch(event.url, init);
          return { status: r.status, body: await r.text(), served_by: r.headers.get('x-served-by') };
        } catch (e) {
          return { error: `${e.name}: ${e.message}` };
        }
      })();
    case 'reject':
      return Promise.reject(new FunctionError(event.kind, event.message));
    default:
      throw new FunctionError('BadRequest', `unknown op ${event.op}`);
  }
});
