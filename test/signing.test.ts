import { type ChildProcess, spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import {
  checkSupaqueueSignature,
  signatureHeader,
  signedContent,
  type VerifyOptions,
  verifySupaqueueSignature,
} from "../functions/_shared/verify_signature.ts";
import { type CurrentJobCall, parseCall } from "../functions/execute_current_job/call.ts";
import { createHandler } from "../functions/execute_current_job/handler.ts";
import { buildRequest } from "../functions/execute_current_job/request.ts";
import { wakeupHeader } from "../functions/execute_current_job/wakeup.ts";
import { projectRoot } from "../src/paths.ts";
import { DENO_BIN, denoEnv } from "./support/deno.ts";

/**
 * The signature scheme v2 of functions/_shared/verify_signature.ts, checked against HMACs computed here
 * independently with node:crypto, and verified as a target receives requests: node:http's header records, WHATWG
 * Headers, and a real Deno server.
 */

const OLD_KEY = "old-key-0123456789abcdef";
const NEW_KEY = "new-key-fedcba9876543210";
const T = 1_764_370_800; // 2025-11-28T23:00:00Z, in seconds
const AT_T = T * 1000 + 250;
const JOB_ID = "0190a7e0-0000-7000-8000-0000000000aa";

interface Fields {
  t: number;
  method: string;
  path: string;
  query: string;
  jobId: string;
  attempt: string;
  idempotencyKey: string;
  body: string;
}

/** The v2 content, written out independently of the module. */
function expectedContent(f: Fields): string {
  return `v2\n${f.t}\n${f.method}\n${f.path}\n${f.query}\n${f.jobId}\n${f.attempt}\n${f.idempotencyKey}\n${f.body}`;
}

/** HMAC-SHA256 of the v2 content, in hex, with node:crypto. */
function expectedMac(key: string, f: Fields): string {
  return createHmac("sha256", key).update(expectedContent(f), "utf8").digest("hex");
}

/** The v1 scheme this file replaces, to show a verifier no longer accepts it. */
function v1Mac(key: string, t: number, method: string, query: string, body: string): string {
  return createHmac("sha256", key).update(`${t}.${method}.${query}\n${body}`, "utf8").digest("hex");
}

const BODY = '{"order":42,"note":"crème brûlée ✓"}';
const SENT_URL = "https://target.example/hooks/orders?tenant=acme&x=a%20b";
const FIELDS: Fields = {
  t: T,
  method: "POST",
  path: "/hooks/orders",
  query: "tenant=acme&x=a%20b",
  jobId: JOB_ID,
  attempt: "3",
  idempotencyKey: "order-42",
  body: BODY,
};

/** Why checkSupaqueueSignature refused a request; undefined when it accepted it. */
async function reasonOf(options: VerifyOptions): Promise<string | undefined> {
  return ((await checkSupaqueueSignature(options)) as { reason?: string }).reason;
}

describe("signing", () => {
  const VECTOR_KEY = "k".repeat(16);
  const VECTOR_JOB = "0190a7e0-0000-7000-8000-000000000001";
  const VECTOR_T = 1_700_000_000;
  // (a) GET with a query and an empty body, Idempotency-Key = the job id; (b) POST to an edge function's URL.
  const vectorA: Fields = {
    t: VECTOR_T,
    method: "GET",
    path: "/hook",
    query: "a=1",
    jobId: VECTOR_JOB,
    attempt: "1",
    idempotencyKey: VECTOR_JOB,
    body: "",
  };
  const vectorB: Fields = {
    t: VECTOR_T,
    method: "POST",
    path: "/functions/v1/send-email",
    query: "",
    jobId: VECTOR_JOB,
    attempt: "2",
    idempotencyKey: "order-42",
    body: '{"a":1}',
  };
  // Pinned (and checked with `openssl dgst -sha256 -hmac kkkkkkkkkkkkkkkk`), so a change to the scheme cannot pass
  // by changing both sides of this test.
  const PINNED_A = "d14d8a277d648014ca9a2f0a24eb822ff40cb10a85515ad0cc3114c99b818236";
  const PINNED_B = "17898e366ae41afbb48d73187bfc015723d4de3f700d31c53a4e2f39f4c2d475";

  test("two fixed vectors: node:crypto and the pinned hex agree with signatureHeader", async () => {
    expect(expectedMac(VECTOR_KEY, vectorA)).toBe(PINNED_A);
    expect(expectedMac(VECTOR_KEY, vectorB)).toBe(PINNED_B);
    const a = await signatureHeader({
      keys: [VECTOR_KEY],
      method: "GET",
      url: "https://x.example/hook?a=1",
      body: "",
      jobId: VECTOR_JOB,
      attempt: 1,
      idempotencyKey: VECTOR_JOB,
      now: VECTOR_T * 1000 + 999,
    });
    expect(a).toBe(`t=1700000000,v2=${PINNED_A}`);
    const b = await signatureHeader({
      keys: [VECTOR_KEY],
      method: "post",
      url: "https://x.example/functions/v1/send-email",
      body: '{"a":1}',
      jobId: VECTOR_JOB,
      attempt: "2",
      idempotencyKey: "order-42",
      now: VECTOR_T * 1000,
    });
    expect(b).toBe(`t=1700000000,v2=${PINNED_B}`);

    // And they verify as a target receives them: (a) as sent; (b) behind Supabase's gateway, with `path`.
    expect(
      await checkSupaqueueSignature({
        headers: { "supaqueue-signature": a, "supaqueue-job-id": VECTOR_JOB, "supaqueue-attempt": "1" },
        method: "GET",
        url: "/hook?a=1",
        body: "",
        keys: [VECTOR_KEY],
        now: VECTOR_T * 1000,
      }),
    ).toEqual({ ok: false, reason: "mismatch" }); // no Idempotency-Key: it is signed
    expect(
      await checkSupaqueueSignature({
        headers: {
          "supaqueue-signature": a,
          "supaqueue-job-id": VECTOR_JOB,
          "supaqueue-attempt": "1",
          "idempotency-key": VECTOR_JOB,
        },
        method: "GET",
        url: "/hook?a=1",
        body: "",
        keys: [VECTOR_KEY],
        now: VECTOR_T * 1000,
      }),
    ).toEqual({ ok: true, timestamp: VECTOR_T });
    expect(
      await checkSupaqueueSignature({
        headers: new Headers({
          "Supaqueue-Signature": b,
          "Supaqueue-Job-Id": VECTOR_JOB,
          "Supaqueue-Attempt": "2",
          "Idempotency-Key": "order-42",
        }),
        method: "POST",
        url: "http://localhost:54321/send-email",
        path: "/functions/v1/send-email",
        body: '{"a":1}',
        keys: [VECTOR_KEY],
        now: VECTOR_T * 1000,
      }),
    ).toEqual({ ok: true, timestamp: VECTOR_T });
  });

  test("signedContent is the v2 content, byte for byte", () => {
    const bytes = signedContent({
      timestamp: T,
      method: "post",
      path: "/hooks/orders",
      query: "tenant=acme&x=a%20b",
      jobId: JOB_ID,
      attempt: 3,
      idempotencyKey: "order-42",
      body: new TextEncoder().encode(BODY),
    });
    expect(Buffer.from(bytes).toString("utf8")).toBe(expectedContent(FIELDS));
    // No Idempotency-Key: an empty line; a string body is the same as its UTF-8 bytes.
    const none = signedContent({ ...FIELDS, timestamp: T, idempotencyKey: null, body: BODY });
    expect(Buffer.from(none).toString("utf8")).toBe(expectedContent({ ...FIELDS, idempotencyKey: "" }));
    expect(
      Buffer.from(
        signedContent({ ...FIELDS, timestamp: T, idempotencyKey: undefined, body: null }),
      ).toString(),
    ).toBe(expectedContent({ ...FIELDS, idempotencyKey: "", body: "" }));
  });

  test("during a rotation both keys sign, the current one first", async () => {
    const header = await signatureHeader({
      keys: [NEW_KEY, OLD_KEY],
      method: "POST",
      url: SENT_URL,
      body: BODY,
      jobId: JOB_ID,
      attempt: 3,
      idempotencyKey: "order-42",
      now: AT_T,
    });
    expect(header).toBe(`t=${T},v2=${expectedMac(NEW_KEY, FIELDS)},v2=${expectedMac(OLD_KEY, FIELDS)}`);
  });

  test("the path and query are signed WHATWG-serialized, as they go on the wire", async () => {
    const header = await signatureHeader({
      keys: [NEW_KEY],
      method: "DELETE",
      url: "https://target.example/a b/./c/../d?q=x y&é=1#fragment",
      body: null,
      jobId: JOB_ID,
      attempt: 1,
      now: AT_T,
    });
    const path = "/a%20b/d";
    const query = "q=x%20y&%C3%A9=1";
    expect(header).toBe(
      `t=${T},v2=${expectedMac(NEW_KEY, { ...FIELDS, method: "DELETE", path, query, attempt: "1", idempotencyKey: "", body: "" })}`,
    );
  });

  test("the signer refuses what could not be sent as signed", async () => {
    const base = { keys: [NEW_KEY], method: "POST", url: SENT_URL, body: BODY, jobId: JOB_ID, attempt: 1 };
    await expect(signatureHeader({ ...base, keys: [] })).rejects.toThrow(/no signing key/);
    await expect(signatureHeader({ ...base, keys: [""] })).rejects.toThrow(/no signing key/);
    await expect(signatureHeader({ ...base, url: "/hooks/orders" })).rejects.toThrow(/absolute URL/);
    for (const jobId of ["", " x", "a\nb", undefined as unknown as string]) {
      await expect(signatureHeader({ ...base, jobId })).rejects.toThrow(/jobId/);
    }
    for (const attempt of [-1, 1.5, "01", "1 ", "", "x", Number.NaN, undefined as unknown as number]) {
      await expect(signatureHeader({ ...base, attempt })).rejects.toThrow(/attempt/);
    }
    await expect(signatureHeader({ ...base, idempotencyKey: "a\r\nX-Evil: 1" })).rejects.toThrow(
      /idempotencyKey/,
    );
    expect(await signatureHeader({ ...base, attempt: "12", idempotencyKey: null })).toMatch(
      /^t=\d+,v2=[0-9a-f]{64}$/,
    );
  });
});

describe("verifying", () => {
  type Received = Omit<VerifyOptions, "headers"> & { headers: Record<string, string> };

  /** A request signed at T with `keys`, as node:http would receive it (req.url is the path and query). */
  async function signed(keys: string[] = [NEW_KEY]): Promise<Received> {
    const header = await signatureHeader({
      keys,
      method: "POST",
      url: SENT_URL,
      body: BODY,
      jobId: JOB_ID,
      attempt: 3,
      idempotencyKey: "order-42",
      now: AT_T,
    });
    return {
      headers: {
        "content-type": "application/json",
        "supaqueue-signature": header,
        "supaqueue-job-id": JOB_ID,
        "supaqueue-attempt": "3",
        "idempotency-key": "order-42",
      },
      method: "POST",
      url: "/hooks/orders?tenant=acme&x=a%20b",
      body: BODY,
      keys: [NEW_KEY],
      now: AT_T + 2000,
    };
  }

  test("accepts the request as sent: absolute or path URL, text or bytes, a Headers or a node:http record", async () => {
    const request = await signed();
    expect(await checkSupaqueueSignature(request)).toEqual({ ok: true, timestamp: T });
    expect(await verifySupaqueueSignature({ ...request, url: SENT_URL })).toBe(true);
    // The host and scheme are not signed: a proxy in front may change them.
    expect(
      await verifySupaqueueSignature({
        ...request,
        url: "http://10.0.0.7:8080/hooks/orders?tenant=acme&x=a%20b",
      }),
    ).toBe(true);
    expect(await verifySupaqueueSignature({ ...request, body: new TextEncoder().encode(BODY) })).toBe(true);
    expect(await verifySupaqueueSignature({ ...request, body: new TextEncoder().encode(BODY).buffer })).toBe(
      true,
    );
    expect(await verifySupaqueueSignature({ ...request, headers: new Headers(request.headers) })).toBe(true);
    // A record written by hand with the usual capitals, and node:http's headersDistinct (arrays of one value).
    const capitalized = Object.fromEntries(
      Object.entries(request.headers).map(([name, value]) => [
        name.replace(/(^|-)([a-z])/g, (_, dash, c) => dash + c.toUpperCase()),
        value,
      ]),
    );
    expect(await verifySupaqueueSignature({ ...request, headers: capitalized })).toBe(true);
    const distinct = Object.fromEntries(Object.entries(request.headers).map(([n, v]) => [n, [v]]));
    expect(await verifySupaqueueSignature({ ...request, headers: distinct })).toBe(true);
  });

  test("refused: a wrong key, or any change to the method, path, query, body, job id, attempt or Idempotency-Key", async () => {
    const request = await signed();
    const withHeaders = (changes: Record<string, string | undefined>): Record<string, string> => {
      const headers: Record<string, string> = { ...request.headers };
      for (const [name, value] of Object.entries(changes)) {
        if (value === undefined) delete headers[name];
        else headers[name] = value;
      }
      return headers;
    };
    const refusals: Partial<VerifyOptions>[] = [
      { keys: ["another-key-0123456789"] },
      { method: "PUT" },
      { method: "GET" },
      { url: "/hooks/other?tenant=acme&x=a%20b" },
      { url: "/hooks/orders/?tenant=acme&x=a%20b" },
      { url: "/hooks/orders?tenant=evil&x=a%20b" },
      { url: "/hooks/orders" },
      { url: "/hooks/orders?x=a%20b&tenant=acme" },
      { body: BODY.replace("42", "43") },
      { body: `${BODY} ` },
      { body: "" },
      // The same call presented as another job, or as another attempt of this one.
      { headers: withHeaders({ "supaqueue-job-id": "0190a7e0-0000-7000-8000-0000000000ab" }) },
      { headers: withHeaders({ "supaqueue-attempt": "4" }) },
      { headers: withHeaders({ "supaqueue-attempt": "0" }) },
      // The Idempotency-Key swapped, dropped, or (on a request sent without one) added.
      { headers: withHeaders({ "idempotency-key": "order-43" }) },
      { headers: withHeaders({ "idempotency-key": undefined }) },
      { headers: withHeaders({ "idempotency-key": "" }) },
      // A v2 moved to another timestamp.
      {
        headers: withHeaders({
          "supaqueue-signature": request.headers["supaqueue-signature"]?.replace(`t=${T}`, `t=${T + 1}`),
        }),
      },
      // A path that the signer did not send.
      { path: "/functions/v1/orders" },
    ];
    for (const changes of refusals) {
      expect({ changes, reason: await reasonOf({ ...request, ...changes }) }).toEqual({
        changes,
        reason: "mismatch",
      });
    }
    // Signed without an Idempotency-Key: received with one, it is refused.
    const header = await signatureHeader({
      keys: [NEW_KEY],
      method: "POST",
      url: SENT_URL,
      body: BODY,
      jobId: JOB_ID,
      attempt: 3,
      now: AT_T,
    });
    const bare = {
      ...request,
      headers: withHeaders({ "supaqueue-signature": header, "idempotency-key": undefined }),
    };
    expect(await verifySupaqueueSignature(bare)).toBe(true);
    expect(await reasonOf({ ...bare, headers: { ...bare.headers, "idempotency-key": "order-42" } })).toBe(
      "mismatch",
    );
  });

  test("rotation: a target knowing either key, or both, accepts a request signed with both", async () => {
    const request = await signed([NEW_KEY, OLD_KEY]);
    for (const keys of [[OLD_KEY], [NEW_KEY], [OLD_KEY, NEW_KEY]]) {
      expect(await verifySupaqueueSignature({ ...request, keys })).toBe(true);
    }
    // A target already on the new key also accepts calls signed only with it, and keeps the old one meanwhile.
    const onlyNew = await signed([NEW_KEY]);
    expect(await verifySupaqueueSignature({ ...onlyNew, keys: [NEW_KEY, OLD_KEY] })).toBe(true);
    // Once the overlap has ended, a target still on the old key refuses.
    expect(await checkSupaqueueSignature({ ...onlyNew, keys: [OLD_KEY] })).toEqual({
      ok: false,
      reason: "mismatch",
    });
  });

  test("behind Supabase's gateway: `path` names the path the signer sent; without it the request fails", async () => {
    const header = await signatureHeader({
      keys: [NEW_KEY],
      method: "POST",
      url: "https://abcdefgh.supabase.co/functions/v1/send-email?tenant=acme",
      body: BODY,
      jobId: JOB_ID,
      attempt: 1,
      idempotencyKey: JOB_ID,
      now: AT_T,
    });
    // What the edge function sees: the gateway stripped /functions/v1, and the host is the runtime's.
    const received: VerifyOptions = {
      headers: new Headers({
        "Supaqueue-Signature": header,
        "Supaqueue-Job-Id": JOB_ID,
        "Supaqueue-Attempt": "1",
        "Idempotency-Key": JOB_ID,
      }),
      method: "POST",
      url: "http://localhost:9000/send-email?tenant=acme",
      body: BODY,
      keys: [NEW_KEY],
      now: AT_T,
    };
    expect(await checkSupaqueueSignature(received)).toEqual({ ok: false, reason: "mismatch" });
    expect(await checkSupaqueueSignature({ ...received, path: "/functions/v1/send-email" })).toEqual({
      ok: true,
      timestamp: T,
    });
    // `path` replaces only the path: the query is still the one received.
    expect(
      await reasonOf({
        ...received,
        url: "http://localhost:9000/send-email?tenant=evil",
        path: "/functions/v1/send-email",
      }),
    ).toBe("mismatch");
    // Another function behind the same key cannot be called with this request.
    expect(await reasonOf({ ...received, path: "/functions/v1/send-sms" })).toBe("mismatch");
    // `path` is serialized as the signer's URL would be; something that is not a path is a configuration mistake.
    expect(await verifySupaqueueSignature({ ...received, path: "/functions/v1/x/../send-email" })).toBe(true);
    for (const path of ["functions/v1/send-email", "/functions/v1/send-email?tenant=acme", "", "/a#b"]) {
      await expect(checkSupaqueueSignature({ ...received, path })).rejects.toThrow(/path must be a path/);
    }
  });

  test("a timestamp outside the tolerance is stale, in the past or the future", async () => {
    const request = await signed();
    const at = (seconds: number, toleranceSeconds?: number) =>
      checkSupaqueueSignature({ ...request, now: (T + seconds) * 1000, toleranceSeconds });
    expect((await at(300)).ok).toBe(true);
    expect(await at(301)).toEqual({ ok: false, reason: "stale" });
    expect((await at(-300)).ok).toBe(true);
    expect(await at(-301)).toEqual({ ok: false, reason: "stale" });
    expect(await at(31, 30)).toEqual({ ok: false, reason: "stale" });
    expect((await at(0, 0)).ok).toBe(true);
    // The default clock is the real one: a request signed at T (in 2025) is long stale.
    expect(await checkSupaqueueSignature({ ...request, now: undefined })).toEqual({
      ok: false,
      reason: "stale",
    });
    await expect(checkSupaqueueSignature({ ...request, toleranceSeconds: -1 })).rejects.toThrow(/tolerance/);
  });

  test("v1 is not accepted: a header with only a correct v1 is malformed, a v1 beside a v2 is ignored", async () => {
    const request = await signed();
    const v1 = `v1=${v1Mac(NEW_KEY, T, "POST", "tenant=acme&x=a%20b", BODY)}`;
    const v2 = request.headers["supaqueue-signature"]?.split(",")[1] ?? "";
    const withSignature = (signature: string) => ({
      ...request,
      headers: { ...request.headers, "supaqueue-signature": signature },
    });
    expect(await reasonOf(withSignature(`t=${T},${v1}`))).toBe("malformed");
    expect(await reasonOf(withSignature(`t=${T},${v1},${v1}`))).toBe("malformed");
    // A v1 can never stand for a v2, even with the right hex.
    expect(await reasonOf(withSignature(`t=${T},${v1.replace("v1=", "v2=")}`))).toBe("mismatch");
    expect(await verifySupaqueueSignature(withSignature(`t=${T},${v1},${v2}`))).toBe(true);
    expect(await verifySupaqueueSignature(withSignature(`t=${T},${v2},v3=whatever`))).toBe(true);
  });

  test("missing and malformed headers are refused; no keys is a mistake", async () => {
    const request = await signed();
    const v2 = request.headers["supaqueue-signature"]?.split(",")[1] ?? "";
    const reason = (changes: Record<string, string | string[] | undefined>) =>
      reasonOf({ ...request, headers: { ...request.headers, ...changes } });
    expect(await reason({ "supaqueue-signature": undefined })).toBe("missing");
    expect(await reason({ "supaqueue-signature": "" })).toBe("missing");
    expect(await reason({ "supaqueue-signature": [] })).toBe("missing");
    expect(await reasonOf({ ...request, headers: new Headers() })).toBe("missing");
    for (const bad of [
      "garbage",
      `t=abc,${v2}`,
      `t=0${T},${v2}`,
      `t=${T}`,
      v2,
      `t=${T},t=${T},${v2}`,
      `t=${T},v2=zz`,
      `t=${T},v2=${"a".repeat(63)}`,
      `t=${T},v2=${"a".repeat(65)}`,
      // More than 8 signatures are refused unchecked: each would cost an HMAC per key.
      `t=${T},${Array(9).fill(v2).join(",")}`,
    ]) {
      expect({ bad, reason: await reason({ "supaqueue-signature": bad }) }).toEqual({
        bad,
        reason: "malformed",
      });
    }
    expect(await verifySupaqueueSignature({ ...request, headers: { ...request.headers } })).toBe(true);
    expect(await reason({ "supaqueue-signature": ` t=${T} , ${v2} ` }).then((r) => r ?? "accepted")).toBe(
      "accepted",
    );
    // The job id and the attempt are required; the attempt is a decimal integer.
    for (const changes of [
      { "supaqueue-job-id": undefined },
      { "supaqueue-job-id": "" },
      { "supaqueue-attempt": undefined },
      { "supaqueue-attempt": "" },
      { "supaqueue-attempt": "three" },
      { "supaqueue-attempt": "03" },
      { "supaqueue-attempt": "-3" },
    ]) {
      expect({ changes, reason: await reason(changes) }).toEqual({ changes, reason: "malformed" });
    }
    // A header that came more than once (node:http's headersDistinct, or a record built so) is malformed.
    const sent = request.headers["supaqueue-signature"] ?? "";
    expect(await reason({ "supaqueue-signature": [sent] })).toBeUndefined();
    for (const [name, value] of Object.entries(request.headers)) {
      if (name === "content-type") continue;
      expect({ name, reason: await reason({ [name]: [value, value] }) }).toEqual({
        name,
        reason: "malformed",
      });
    }
    expect(await reasonOf({ ...request, headers: { ...request.headers, "Supaqueue-Attempt": "3" } })).toBe(
      "malformed",
    );
    // Headers joins a repeated header with ", ": then the signature is malformed, and a job id does not match.
    const joined = new Headers(request.headers);
    joined.append("Supaqueue-Signature", sent);
    expect(await reasonOf({ ...request, headers: joined })).toBe("malformed");
    const twoJobs = new Headers(request.headers);
    twoJobs.append("Supaqueue-Job-Id", JOB_ID);
    expect(await reasonOf({ ...request, headers: twoJobs })).toBe("mismatch");
    await expect(verifySupaqueueSignature({ ...request, keys: [] })).rejects.toThrow(/no keys given/);
    await expect(verifySupaqueueSignature({ ...request, keys: [""] })).rejects.toThrow(/no keys given/);
    // The v1 API's `header` option instead of `headers`: a mistake, said so.
    const { headers: _, ...withoutHeaders } = request;
    await expect(
      verifySupaqueueSignature({ ...withoutHeaders, header: "t=1" } as unknown as VerifyOptions),
    ).rejects.toThrow(/headers must be the request's headers/);
  });
});

/** A call as parseCall returns it, for a queue with these fields and a job with this payload. */
function parsed(queue: Record<string, unknown>, payload: unknown = { n: 1 }): CurrentJobCall {
  const call = parseCall({
    current_job_id: 1,
    attempt: 2,
    lease_until: null,
    job: { id: JOB_ID, payload, headers: {} },
    queue: {
      name: "q",
      url: "https://t.example/hook",
      is_function: false,
      method: "POST",
      headers: {},
      timeout_ms: 1000,
      ...queue,
    },
  });
  if (typeof call === "string") throw new Error(call);
  return call;
}

describe("over HTTP, in Node", () => {
  /** Serves once with node:http, answering what checkSupaqueueSignature said with and without `path`. */
  async function serve(run: (origin: string) => Promise<void>) {
    const results: { url: string; headers: IncomingHttpHeaders; asReceived: unknown; withPath: unknown }[] =
      [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", async () => {
        const body = Buffer.concat(chunks);
        const common = {
          headers: req.headers,
          method: req.method ?? "",
          url: req.url ?? "/",
          body,
          keys: [NEW_KEY],
        };
        results.push({
          url: req.url ?? "",
          headers: req.headers,
          asReceived: await checkSupaqueueSignature(common),
          withPath: await checkSupaqueueSignature({ ...common, path: "/functions/v1/send-email" }),
        });
        res.end("ok");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      await run(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    return results;
  }

  test("a round trip: what fetch sends verifies from node:http's req.headers and req.url", async () => {
    const results = await serve(async (origin) => {
      const send = async (signedUrl: string, sentUrl: string, body: string) => {
        const headers = new Headers({
          "Content-Type": "application/json",
          "Idempotency-Key": "order-42",
          "Supaqueue-Job-Id": JOB_ID,
          "Supaqueue-Attempt": "1",
        });
        headers.set(
          "Supaqueue-Signature",
          await signatureHeader({
            keys: [NEW_KEY],
            method: "POST",
            url: signedUrl,
            body,
            jobId: JOB_ID,
            attempt: 1,
            idempotencyKey: "order-42",
          }),
        );
        await (await fetch(sentUrl, { method: "POST", headers, body })).text();
      };
      // Straight to the target, with a query WHATWG serializes (the space, the é).
      await send(
        `${origin}/functions/v1/send-email?q=a b&é=1`,
        `${origin}/functions/v1/send-email?q=a b&é=1`,
        BODY,
      );
      // Signed for the gateway's URL, received with the path stripped (as the edge function sees it).
      await send(
        `https://abcdefgh.supabase.co/functions/v1/send-email?k=v`,
        `${origin}/send-email?k=v`,
        BODY,
      );
    });
    expect(results.map((r) => r.url)).toEqual([
      "/functions/v1/send-email?q=a%20b&%C3%A9=1",
      "/send-email?k=v",
    ]);
    expect(results[0]).toMatchObject({ asReceived: { ok: true }, withPath: { ok: true } });
    expect(results[1]).toMatchObject({ asReceived: { reason: "mismatch" }, withPath: { ok: true } });
  });

  test("buildRequest's request, signed from its own headers, verifies (GET: the payload is in the query)", async () => {
    for (const [method, payload] of [
      ["GET", { q: "a b&c", n: 5 }],
      ["POST", { a: "é" }],
    ] as const) {
      const request = buildRequest(parsed({ method, url: "https://t.example/search?fixed=1" }, payload));
      expect(request.headers.get("supaqueue-job-id")).toBe(JOB_ID);
      const header = await signatureHeader({
        keys: [NEW_KEY],
        method: request.method,
        url: request.url,
        body: request.body,
        jobId: request.headers.get("supaqueue-job-id") ?? "",
        attempt: request.headers.get("supaqueue-attempt") ?? "",
        idempotencyKey: request.headers.get("idempotency-key"),
        now: AT_T,
      });
      const query = method === "GET" ? "fixed=1&q=a%20b%26c&n=5" : "fixed=1";
      const body = request.body ?? "";
      expect(header).toBe(
        `t=${T},v2=${expectedMac(NEW_KEY, { ...FIELDS, method, path: "/search", query, attempt: "2", idempotencyKey: JOB_ID, body })}`,
      );
      request.headers.set("Supaqueue-Signature", header);
      const received = {
        headers: request.headers,
        method,
        url: request.url,
        body,
        keys: [NEW_KEY],
        now: AT_T,
      };
      expect(await checkSupaqueueSignature(received)).toEqual({ ok: true, timestamp: T });
      const other = new Headers(request.headers);
      other.set("Supaqueue-Attempt", "3");
      expect(await reasonOf({ ...received, headers: other })).toBe("mismatch");
    }
  });
});

describe("the handler signs what it sends", () => {
  async function send(queue: Record<string, unknown>, jobHeaders: Record<string, string> = {}) {
    const fetched: Request[] = [];
    const details = {
      current_job_id: 7,
      attempt: 4,
      job: { id: JOB_ID, payload: { a: "é" }, headers: jobHeaders },
      queue: {
        name: "q",
        url: "https://t.example/h?k=v",
        is_function: false,
        method: "POST",
        headers: {},
        timeout_ms: 1000,
        ...queue,
      },
    };
    const handler = createHandler({
      secret: "s",
      now: () => AT_T,
      fetch: async (input, init) => {
        fetched.push(new Request(input, init));
        return new Response("ok");
      },
      db: {
        claim: async () => [details],
        completeAndClaim: async (outcomes) => ({
          finished: outcomes.map((o) => o.current_job_id),
          calls: [],
        }),
        completeCallback: async () => "unknown",
      },
    });
    const wakeup = JSON.stringify({ v: 2, ids: [7] });
    const res = await handler(
      new Request("http://edge.test/", {
        method: "POST",
        headers: {
          "Supaqueue-Wakeup": await wakeupHeader({ secret: "s", body: wakeup, t: AT_T, w: 41_000 }),
        },
        body: wakeup,
      }),
    );
    expect(res.status).toBe(200);
    await handler.idle();
    const [request] = fetched;
    if (!request) throw new Error("nothing was fetched");
    return { request, body: await request.text() };
  }

  test("a queue with signing_keys sends a v2 header that verifies against the request as received", async () => {
    const { request, body } = await send(
      { signing_keys: [NEW_KEY, OLD_KEY] },
      { "Supaqueue-Signature": "forged", "Idempotency-Key": "order-42" },
    );
    const fields = {
      ...FIELDS,
      path: "/h",
      query: "k=v",
      attempt: "4",
      idempotencyKey: "order-42",
      body,
    };
    expect(request.headers.get("supaqueue-signature")).toBe(
      `t=${T},v2=${expectedMac(NEW_KEY, fields)},v2=${expectedMac(OLD_KEY, fields)}`,
    );
    expect(body).toBe('{"a":"é"}');
    for (const keys of [[NEW_KEY], [OLD_KEY]]) {
      expect(
        await checkSupaqueueSignature({
          headers: request.headers,
          method: request.method,
          url: request.url,
          body,
          keys,
          now: AT_T,
        }),
      ).toEqual({ ok: true, timestamp: T });
    }
  });

  test("a queue without keys (null, absent or empty) sends no signature", async () => {
    for (const queue of [{ signing_keys: null }, {}, { signing_keys: [] }]) {
      const { request } = await send(queue);
      expect(request.headers.has("supaqueue-signature")).toBe(false);
    }
  });
});

test("the verifier runs unchanged in a real Deno server, behind a stripped path too", async () => {
  const module = join(projectRoot(), "functions", "_shared", "verify_signature.ts");
  // As a target's edge function would use it: req.headers (Headers), req.url (absolute), the raw body.
  const script = `
    import { checkSupaqueueSignature } from ${JSON.stringify(`file://${module}`)};
    Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: ({ port }) => console.log("listening " + port) },
      async (req) => {
        const common = { headers: req.headers, method: req.method, url: req.url, body: await req.text(), keys: [Deno.args[0]] };
        return Response.json({
          path: new URL(req.url).pathname,
          asReceived: await checkSupaqueueSignature(common),
          withPath: await checkSupaqueueSignature({ ...common, path: "/functions/v1/send-email" }),
        });
      },
    );`;
  const child: ChildProcess = spawn(DENO_BIN, ["eval", "--no-config", script, NEW_KEY], {
    env: denoEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  try {
    let output = "";
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`deno did not start:\n${output}`)), 30_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString("utf8");
        const match = /listening (\d+)/.exec(output);
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`deno exited with ${code}:\n${output}`));
      });
    });
    const origin = `http://127.0.0.1:${port}`;
    const send = async (
      signedUrl: string,
      sentUrl: string,
      changes: { body?: string; jobId?: string } = {},
    ) => {
      const headers = new Headers({
        "Content-Type": "application/json",
        "Idempotency-Key": JOB_ID,
        "Supaqueue-Job-Id": changes.jobId ?? JOB_ID,
        "Supaqueue-Attempt": "2",
      });
      headers.set(
        "Supaqueue-Signature",
        await signatureHeader({
          keys: [NEW_KEY],
          method: "POST",
          url: signedUrl,
          body: BODY,
          jobId: JOB_ID,
          attempt: 2,
          idempotencyKey: JOB_ID,
        }),
      );
      const res = await fetch(sentUrl, { method: "POST", headers, body: changes.body ?? BODY });
      return res.json();
    };
    // Signed for the functions URL, seen by the function with /functions/v1 stripped: only `path` makes it verify.
    expect(
      await send(
        "https://abcdefgh.supabase.co/functions/v1/send-email?tenant=acme",
        `${origin}/send-email?tenant=acme`,
      ),
    ).toEqual({
      path: "/send-email",
      asReceived: { ok: false, reason: "mismatch" },
      withPath: { ok: true, timestamp: expect.any(Number) },
    });
    // Received at the path it was sent to: it verifies either way.
    expect(
      await send(`${origin}/functions/v1/send-email`, `${origin}/functions/v1/send-email`),
    ).toMatchObject({
      asReceived: { ok: true },
      withPath: { ok: true },
    });
    // A tampered body, or another job id, is refused.
    for (const changes of [{ body: `${BODY} ` }, { jobId: "0190a7e0-0000-7000-8000-0000000000ff" }]) {
      expect(
        await send(`${origin}/functions/v1/send-email`, `${origin}/functions/v1/send-email`, changes),
      ).toMatchObject({
        asReceived: { reason: "mismatch" },
        withPath: { reason: "mismatch" },
      });
    }
  } finally {
    child.kill("SIGTERM");
  }
});
