import type { WebHandler } from "./functions-server.ts";

/**
 * The endpoints the demo's queues call, served by the local stack itself so the demo needs nothing outside the
 * machine. Each behaves like a kind of real target:
 * - fast (also as the edge function `demo-fast`): answers in 5 to 40 ms;
 * - slow: answers in about 300 ms, except that a job sent with `"stall": true` hangs for 1.5 s on its first
 *   attempt, beyond its queue's 1 s timeout, and answers normally on the next;
 * - flaky (the edge function `demo-flaky`): 503 on about 30% of calls (retried), and 422 for a job sent with
 *   `"invalid": true` (a client error: failed at once, not retried);
 * - render: work longer than a call (a queue with callback_timeout): answers 202 at once, then, 0.3 to 1 s later,
 *   reports `{"status": 200, "body": {"frames": ...}}` to the call's Supaqueue-Callback-Url with its token, as a
 *   render farm would.
 */
export function demoTarget(random: () => number = Math.random): WebHandler {
  return async (request) => {
    const url = new URL(request.url);
    const endpoint = url.pathname.replace(/^\/functions\/v1\/demo-/, "/demo/");
    const payload =
      request.method === "GET"
        ? Object.fromEntries(url.searchParams)
        : await request.json().catch(() => ({}));
    const attempt = Number(request.headers.get("supaqueue-attempt") ?? "1");
    switch (endpoint) {
      case "/demo/fast":
        await sleep(5 + random() * 35);
        return Response.json({ ok: true, job: request.headers.get("supaqueue-job-id") });
      case "/demo/slow":
        await sleep(payload.stall && attempt === 1 ? 1500 : 250 + random() * 100);
        return Response.json({ ok: true });
      case "/demo/flaky":
        await sleep(10 + random() * 40);
        if (payload.invalid) return Response.json({ error: "invalid order: no items" }, { status: 422 });
        if (random() < 0.3)
          return Response.json({ error: "service unavailable, try again" }, { status: 503 });
        return Response.json({ ok: true });
      case "/demo/render": {
        const callback = request.headers.get("supaqueue-callback-url");
        const token = request.headers.get("supaqueue-callback-token");
        if (!callback || !token) {
          return Response.json(
            { error: "render answers 202 only to a queue with callback_timeout" },
            { status: 400 },
          );
        }
        // Not awaited: the call is answered now and the work goes on. A callback that fails is left to the queue's
        // callback_timeout, which retries the call.
        setTimeout(
          () =>
            void fetch(callback, {
              method: "POST",
              headers: { "Supaqueue-Callback-Token": token, "Content-Type": "application/json" },
              body: JSON.stringify({ status: 200, body: { frames: 24 * Number(payload.seconds ?? 1) } }),
            }).catch(() => {}),
          300 + random() * 700,
        ).unref();
        return Response.json({ accepted: true }, { status: 202 });
      }
      default:
        return Response.json({ error: `no demo endpoint ${url.pathname}` }, { status: 404 });
    }
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
