// http-js: a service-worker style HTTP handler (componentize-js builds it
// as a wasi:http/proxy component; nothing fnhost-specific), the
// JavaScript twin of component-http-probe. Its paths:
//   /hello                 200, x-fn: js, "hello from js"
//   /echo                  method, path, query, x-test, then the request body
//   /stream?n=N&ms=M       N chunks "chunk I\n", M ms apart
//   /spin                  "start\n", then loops forever
addEventListener('fetch', (event) => {
  event.respondWith(handle(event.request));
});

const encoder = new TextEncoder();

async function handle(request) {
  const url = new URL(request.url);
  switch (url.pathname) {
    case '/hello':
      return new Response('hello from js', { headers: { 'x-fn': 'js' } });
    case '/echo': {
      const body = await request.text();
      const test = request.headers.get('x-test') ?? '';
      return new Response(`${request.method} ${url.pathname}${url.search} x-test=${test} body=${body}`);
    }
    case '/stream': {
      const n = Number(url.searchParams.get('n') ?? 3);
      const ms = Number(url.searchParams.get('ms') ?? 100);
      let i = 0;
      const body = new ReadableStream({
        async pull(controller) {
          if (i >= n) {
            controller.close();
            return;
          }
          if (i > 0) await new Promise((resolve) => setTimeout(resolve, ms));
          controller.enqueue(encoder.encode(`chunk ${i}\n`));
          i += 1;
        },
      });
      return new Response(body, { headers: { 'content-type': 'text/plain' } });
    }
    case '/spin': {
      let started = false;
      const body = new ReadableStream({
        pull(controller) {
          if (!started) {
            started = true;
            controller.enqueue(encoder.encode('start\n'));
            return;
          }
          for (;;) {}
        },
      });
      return new Response(body);
    }
    default:
      return new Response('no such path', { status: 404 });
  }
}
