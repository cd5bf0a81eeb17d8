// hello-js: an fnhost function in JavaScript (componentize-js).
// Build: `fnhost build examples/components/hello-js`; run:
// `fnhost invoke <printed path> --payload '{"name":"you"}'`.
import { handler, FunctionError } from './fnhost.js';

export const handle = handler((event, ctx) => {
  if (typeof event.name !== 'string' || event.name.length === 0) {
    throw new FunctionError('InvalidRequest', 'name must be a non-empty string');
  }
  console.log(`request ${ctx.requestId}: greeting ${event.name}`);
  return { message: `Hello, ${event.name}!`, language: 'javascript' };
});
