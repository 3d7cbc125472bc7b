/**
 * Preloaded into the Deno process that serves execute_current_job in tests (`deno run --preload`): the
 * `EdgeRuntime.waitUntil` that Supabase's edge runtime provides, so the function takes the same path as in
 * production. Background work is kept alive by the promise itself; errors are logged, never thrown.
 */
(globalThis as { EdgeRuntime?: { waitUntil(promise: Promise<unknown>): void } }).EdgeRuntime = {
  waitUntil(promise) {
    promise.catch((error) => console.error("EdgeRuntime.waitUntil: background work failed:", error));
  },
};

declare const Deno: { addSignalListener(signal: "SIGUSR2", handler: () => void): void };

// Plain Deno never fires `beforeunload` while Deno.serve runs; the edge runtime does before it retires a worker. Tests
// send SIGUSR2 to play that moment (reason: wall_clock).
Deno.addSignalListener("SIGUSR2", () => {
  dispatchEvent(new CustomEvent("beforeunload", { detail: { reason: "wall_clock" } }));
});
