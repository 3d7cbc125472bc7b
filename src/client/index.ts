// Supaqueue's client for app code (server code and edge functions) on supabase-js: `import { createSupaqueue } from
// "supaqueue"`. It imports nothing at run time but its own files, so Node, Deno and bundlers load it as it is.
export { type ClientOptions, createSupaqueue, type JobInput, type Supaqueue } from "./client.ts";
export { PayloadError, SupaqueueError, WaitTimeoutError } from "./errors.ts";
export type {
  Attempt,
  EnqueueOptions,
  Job,
  JobStatus,
  Payload,
  PayloadMap,
  QueueStats,
  WaitOptions,
} from "./types.ts";
