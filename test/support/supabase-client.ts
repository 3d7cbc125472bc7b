import { createClient, type SupabaseClient } from "@supabase/supabase-js";

/**
 * A SupabaseClient for the tests' stand-ins. supabase-js 2.10x insists on a WebSocket constructor for Realtime on
 * Node < 22 (Node 20 has none built in; apps pass the `ws` package as `realtime.transport`). The client never uses
 * Realtime, so the tests give it one that refuses to be used.
 */
export function supabaseClient(url: string, key: string): SupabaseClient {
  class NoRealtime {
    constructor() {
      throw new Error("Realtime is not used by Supaqueue's client");
    }
  }
  return createClient(url, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    // biome-ignore lint/suspicious/noExplicitAny: a constructor that is never called
    realtime: { transport: NoRealtime as any },
  });
}
