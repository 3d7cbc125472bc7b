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
