// Supaqueue's client for app code (server code and edge functions) on supabase-js: `import { createSupaqueue } from
// "supaqueue"`. It imports nothing at run time but its own files, so Node, Deno and bundlers load it as it is.
// Unlike the rest of src/, its files import each other as `.js`: tsc rewrites `.ts` specifiers in the JavaScript it
// emits but not in declarations, and the package's .d.ts files must name files that exist in lib/.

// For targets of a queue with callback_timeout: read a call's callback and report how the work ended.
export {
  type Callback,
  type CallbackAnswer,
  CallbackError,
  type CallbackOutcome,
  callbackOf,
  reportCallback,
} from "../../functions/_shared/report_callback.js";
export { type ClientOptions, createSupaqueue, type JobInput, type Supaqueue } from "./client.js";
export { PayloadError, SupaqueueError, WaitTimeoutError } from "./errors.js";
export type {
  Attempt,
  EnqueueOptions,
  Job,
  JobStatus,
  Payload,
  PayloadMap,
  QueueStats,
  WaitOptions,
} from "./types.js";
