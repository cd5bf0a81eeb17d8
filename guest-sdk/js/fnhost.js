// fnhost's JavaScript helper: a plain function becomes the `handle`
// export of the WIT world `fnhost:function/handler` (wit/function.wit).
//
//     import { handler } from './fnhost.js';
//     export const handle = handler((event, ctx) => {
//       console.log(`request ${ctx.requestId}`);
//       return { greeting: `Hello, ${event.name}!` };
//     });
//
// The payload arrives parsed from JSON (an empty payload is `{}`); what
// the function returns is sent back as JSON. A thrown exception becomes
// the invocation's `Guest { kind, message }` error: `kind` is the
// exception's name (`TypeError`, or the `kind` of a `FunctionError`),
// `message` its message. `fnhost build` puts this file beside your code.

import * as context from 'fnhost:function/context@1.0.0';
import { call as hostCall } from 'fnhost:function/capabilities@1.0.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A handled failure with a kind of your choosing. */
export class FunctionError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = kind;
    this.kind = kind;
  }
}

/** A capability call that did not answer: `kind` is `failed` (the
 * capability's own error, in `error`), `denied` or `limit`. */
export class CapabilityError extends Error {
  constructor(kind, message, error) {
    super(message);
    this.name = 'CapabilityError';
    this.kind = kind;
    this.error = error;
  }
}

/** What this invocation is (read when asked). */
export const ctx = {
  get requestId() { return context.requestId(); },
  get functionName() { return context.functionName(); },
  get functionVersion() { return context.functionVersion(); },
  get memoryLimit() { return Number(context.memoryLimit()); },
  get timeoutMs() { return Number(context.timeoutNs() / 1000000n); },
  /** Milliseconds left before the deadline. */
  remainingMs() { return Number(context.remainingNs() / 1000000n); },
  /** `{ id, attempt }` for an event invocation, else `undefined`. */
  get event() { return context.event(); },
};

/** Calls the capability `name` with `request` (sent as JSON); returns its
 * JSON answer parsed, or throws a `CapabilityError`. */
export function call(name, request) {
  let bytes;
  try {
    bytes = hostCall(name, encoder.encode(JSON.stringify(request ?? null)));
  } catch (e) {
    const err = e && e.payload !== undefined ? e.payload : e;
    if (err && err.tag === 'failed') {
      throw new CapabilityError('failed', err.val.message, err.val);
    }
    if (err && (err.tag === 'denied' || err.tag === 'limit')) {
      throw new CapabilityError(err.tag, err.val);
    }
    throw e;
  }
  const text = decoder.decode(bytes);
  return text.length ? JSON.parse(text) : null;
}

function asError(e) {
  if (e instanceof Error) {
    return { kind: String(e.kind ?? e.name ?? 'Error'), message: String(e.message) };
  }
  return { kind: 'Error', message: String(e) };
}

/** Wraps `fn(event, ctx)` as the world's `handle` export. */
export function handler(fn) {
  return function handle(payload) {
    const text = decoder.decode(payload);
    let event;
    try {
      event = text.length ? JSON.parse(text) : {};
    } catch (e) {
      throw { kind: 'InvalidJson', message: `the payload is not JSON: ${e.message}` };
    }
    let out;
    try {
      out = fn(event, ctx);
    } catch (e) {
      throw asError(e);
    }
    if (out instanceof Promise) {
      // An async handler: the export's Promise is awaited (componentize-js
      // runs the event loop until it settles), so `await fetch(...)` works.
      return out.then(encode, (e) => { throw asError(e); });
    }
    return encode(out);
  };
}

function encode(out) {
  return encoder.encode(JSON.stringify(out === undefined ? null : out));
}
