/**
 * Reading HTTP bodies in bounded memory, and describing errors. Shared by the calls to targets (execute.ts) and the
 * calls to the database (rpc.ts). Uses no Deno globals, so it runs under Node in tests and in local mode.
 */

/** The size of the one buffer a body is read into (see chunkReader). Most answers fit in one read. */
export const READ_BUFFER_BYTES = 8192;

export interface BoundedText {
  /** What was read, at most the bound (null for an empty body). */
  text: string | null;
  /** Whether the body was longer than the bound and cut. */
  truncated: boolean;
  /** Why reading stopped early (the connection broke, the call was aborted), or null. */
  error: string | null;
}

/**
 * Reads at most `maxChars` characters of a body, streaming, and stops reading (cancelling the rest) once it has
 * them, so a huge body never sits in memory. A body that fails midway keeps what arrived and reports the error.
 */
export async function readBounded(response: Response, maxChars: number): Promise<BoundedText> {
  if (!response.body) return { text: null, truncated: false, error: null };
  const chunks = chunkReader(response.body);
  const decoder = new TextDecoder();
  let text = "";
  let truncated = false;
  let error: string | null = null;
  try {
    for (;;) {
      if (text.length >= maxChars) {
        truncated = true;
        break;
      }
      const chunk = await chunks.read();
      if (chunk === null) {
        text += decoder.decode();
        break;
      }
      text += decoder.decode(chunk, { stream: true });
    }
  } catch (e) {
    error = describeError(e);
  }
  // Stop the transfer of whatever is left; the connection is released rather than drained.
  chunks.cancel();
  if (text.length > maxChars) {
    text = text.slice(0, maxChars);
    truncated = true;
  }
  return { text: text === "" && !truncated ? null : text, truncated, error };
}

/**
 * Reads a request's body as bytes, refusing (null) one larger than `maxBytes` without reading the rest. The wakeup's
 * MAC is checked over these exact bytes, before anything parses them.
 */
export async function readBytes(request: Request, maxBytes: number): Promise<Uint8Array | null> {
  if (!request.body) return new Uint8Array(0);
  const chunks = chunkReader(request.body);
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const chunk = await chunks.read();
      if (chunk === null) break;
      size += chunk.length;
      if (size > maxBytes) return null;
      // The reader reuses its buffer: keep a copy.
      parts.push(chunk.slice());
    }
  } finally {
    chunks.cancel();
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return bytes;
}

/**
 * Reads a body chunk by chunk; `read()` resolves to null at the end. A byte stream (Deno's fetch bodies are) is read
 * into one small buffer reused for every chunk, so a chunk is only valid until the next read. Its default reader
 * would allocate a new 64 KiB buffer for every read, memory that is only returned at V8's next garbage collection:
 * with two fetches per call that was most of the function's peak memory (bench/edge.ts). Other streams are read
 * with their default reader.
 */
export function chunkReader(body: ReadableStream<Uint8Array>): {
  read(): Promise<Uint8Array | null>;
  cancel(): void;
} {
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch {
    // Not a byte stream.
  }
  if (byob) {
    const reader = byob;
    let buffer = new Uint8Array(READ_BUFFER_BYTES);
    return {
      async read() {
        const { done, value } = await reader.read(buffer);
        if (done || !value) return null;
        // The read took the buffer over and returns it filled; the next read reuses its memory.
        buffer = new Uint8Array(value.buffer);
        return value;
      },
      cancel: () => void reader.cancel().catch(() => {}),
    };
  }
  const reader = body.getReader();
  return {
    async read() {
      const { done, value } = await reader.read();
      return done ? null : value;
    },
    cancel: () => void reader.cancel().catch(() => {}),
  };
}

/** An error's message with its cause (fetch puts the socket error there), never a stack. */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? error.cause.message : undefined;
  return cause && cause !== error.message ? `${error.message} (${cause})` : error.message;
}

/** A JSON response, as every answer of the function is. */
export function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}
