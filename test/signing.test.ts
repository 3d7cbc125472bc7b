import { execFile } from "node:child_process";
import { createHmac } from "node:crypto";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";
import {
  checkSupaqueueSignature,
  signatureHeader,
  type VerifyOptions,
  verifySupaqueueSignature,
} from "../functions/_shared/verify_signature.ts";
import {
  buildRequest,
  type CurrentJobCall,
  createHandler,
  parseCall,
  signRequest,
} from "../functions/execute_current_job/handler.ts";
import { projectRoot } from "../src/paths.ts";
import { DENO_BIN, denoEnv } from "./support/deno.ts";

/**
 * The signature scheme of functions/_shared/verify_signature.ts, checked against HMACs computed here independently
 * with node:crypto, and the handler's use of it: what execute_current_job sends is what a target verifies.
 */

const OLD_KEY = "old-key-0123456789abcdef";
const NEW_KEY = "new-key-fedcba9876543210";
const T = 1_764_370_800; // 2025-11-28T23:00:00Z, in seconds
const AT_T = T * 1000 + 250;

/** HMAC-SHA256 of `<t>.<METHOD>.<query>\n<body>`, in hex: the scheme, written out independently of the module. */
function expectedMac(key: string, t: number, method: string, query: string, body: string): string {
  return createHmac("sha256", key).update(`${t}.${method}.${query}\n${body}`, "utf8").digest("hex");
}

const BODY = '{"order":42,"note":"crème brûlée ✓"}';
const URL_WITH_QUERY = "https://target.example/hooks/orders?tenant=acme&x=a%20b";

describe("signing", () => {
  test("a known vector: t=<seconds>,v1=<hex HMAC of t.METHOD.query\\nbody>", async () => {
    const header = await signatureHeader({
      keys: [NEW_KEY],
      method: "post",
      url: URL_WITH_QUERY,
      body: BODY,
      now: AT_T,
    });
    expect(header).toBe(`t=${T},v1=${expectedMac(NEW_KEY, T, "POST", "tenant=acme&x=a%20b", BODY)}`);
    // Pinned as well (computed with `openssl dgst -sha256 -hmac`), so a change to the scheme cannot pass by
    // changing both sides of this test; these are the vectors the README quotes.
    const pin = (method: string, url: string, body: string) =>
      signatureHeader({ keys: ["k".repeat(16)], method, url, body, now: 1_700_000_000_999 });
    expect(await pin("GET", "https://t.example/p?a=1", "")).toBe(
      "t=1700000000,v1=474d3d43c00f37460b5c8879acd3d39f5818e77bcdced89ce861898bfa1b807c",
    );
    expect(await pin("POST", "https://t.example/p", '{"a":1}')).toBe(
      "t=1700000000,v1=13b45dff773f3e90e478772f70b50d1f3d68305af96a54e24e2d3833a9a100d3",
    );
  });

  test("during a rotation both keys sign, the current one first", async () => {
    const header = await signatureHeader({
      keys: [NEW_KEY, OLD_KEY],
      method: "POST",
      url: "https://t.example/x",
      body: BODY,
      now: AT_T,
    });
    expect(header).toBe(
      `t=${T},v1=${expectedMac(NEW_KEY, T, "POST", "", BODY)},v1=${expectedMac(OLD_KEY, T, "POST", "", BODY)}`,
    );
  });

  test("GET and DELETE sign the query, where their payload travels, and an empty body", async () => {
    const call = parsed({ method: "GET", url: "https://t.example/search?fixed=1" }, { q: "a b&c", n: 5 });
    const request = buildRequest(call);
    await signRequest(request, [NEW_KEY], AT_T);
    const query = "fixed=1&q=a%20b%26c&n=5";
    expect(request.url).toBe(`https://t.example/search?${query}`);
    expect(request.headers.get("supaqueue-signature")).toBe(
      `t=${T},v1=${expectedMac(NEW_KEY, T, "GET", query, "")}`,
    );
  });
});

/** A call as parseCall returns it, for a queue with these fields and a job with this payload. */
function parsed(queue: Record<string, unknown>, payload: unknown = { n: 1 }): CurrentJobCall {
  const call = parseCall({
    current_job_id: 1,
    attempt: 1,
    lease_until: null,
    job: { id: "00000000-0000-4000-8000-0000000000aa", payload, headers: {} },
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

describe("verifying", () => {
  /** A request signed at T with `keys`, as a target would receive it (Node's req.url is the path and query). */
  async function signed(
    keys: string[],
    method = "POST",
    body = BODY,
  ): Promise<VerifyOptions & { header: string }> {
    const header = await signatureHeader({ keys, method, url: URL_WITH_QUERY, body, now: AT_T });
    return {
      header,
      method,
      url: "/hooks/orders?tenant=acme&x=a%20b",
      body,
      keys: [NEW_KEY],
      now: AT_T + 2000,
    };
  }

  test("accepts the request as sent, whether the URL is absolute or a path, the body text or bytes", async () => {
    const request = await signed([NEW_KEY]);
    expect(await checkSupaqueueSignature(request)).toEqual({ ok: true, timestamp: T });
    expect(await verifySupaqueueSignature({ ...request, url: URL_WITH_QUERY })).toBe(true);
    // A gateway that rewrites the path (Supabase's: /functions/v1/<name> becomes /<name>) does not matter.
    expect(
      await verifySupaqueueSignature({ ...request, url: "http://localhost:9999/orders?tenant=acme&x=a%20b" }),
    ).toBe(true);
    expect(await verifySupaqueueSignature({ ...request, body: new TextEncoder().encode(BODY) })).toBe(true);
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

  test("a wrong key, a tampered body, query or method are refused", async () => {
    const request = await signed([NEW_KEY]);
    const refused = async (changes: Partial<VerifyOptions>) =>
      (await checkSupaqueueSignature({ ...request, ...changes })) as { reason?: string };
    expect((await refused({ keys: ["another-key-0123456789"] })).reason).toBe("mismatch");
    expect((await refused({ body: BODY.replace("42", "43") })).reason).toBe("mismatch");
    expect((await refused({ body: `${BODY} ` })).reason).toBe("mismatch");
    expect((await refused({ url: "/hooks/orders?tenant=evil&x=a%20b" })).reason).toBe("mismatch");
    expect((await refused({ url: "/hooks/orders" })).reason).toBe("mismatch");
    expect((await refused({ method: "PUT" })).reason).toBe("mismatch");
    // A v1 moved to another timestamp no longer matches.
    const header = request.header?.replace(`t=${T}`, `t=${T + 1}`);
    expect((await refused({ header })).reason).toBe("mismatch");
  });

  test("a timestamp outside the tolerance is stale, in the past or the future", async () => {
    const request = await signed([NEW_KEY]);
    const at = (seconds: number, toleranceSeconds?: number) =>
      checkSupaqueueSignature({ ...request, now: (T + seconds) * 1000, toleranceSeconds });
    expect((await at(300)).ok).toBe(true);
    expect(await at(301)).toEqual({ ok: false, reason: "stale" });
    expect((await at(-300)).ok).toBe(true);
    expect(await at(-301)).toEqual({ ok: false, reason: "stale" });
    expect(await at(31, 30)).toEqual({ ok: false, reason: "stale" });
    // The default clock is the real one: a request signed at T (in 2025) is long stale.
    expect(await checkSupaqueueSignature({ ...request, now: undefined })).toEqual({
      ok: false,
      reason: "stale",
    });
  });

  test("missing and malformed headers are refused; later schemes are ignored; no keys is a mistake", async () => {
    const request = await signed([NEW_KEY]);
    const v1 = request.header?.split(",")[1] ?? "";
    const reason = async (header: VerifyOptions["header"]) =>
      ((await checkSupaqueueSignature({ ...request, header })) as { reason?: string }).reason;
    expect(await reason(null)).toBe("missing");
    expect(await reason("")).toBe("missing");
    for (const bad of [
      "garbage",
      `t=abc,${v1}`,
      `t=${T}`,
      v1,
      `t=${T},t=${T},${v1}`,
      `t=${T},v1=zz`,
      `t=${T},v1=${"a".repeat(63)}`,
    ]) {
      expect(await reason(bad)).toBe("malformed");
    }
    // More than 8 signatures are refused unchecked: each would cost an HMAC per key.
    expect(await reason(`t=${T},${Array(9).fill(v1).join(",")}`)).toBe("malformed");
    // Node gives a header that came more than once as an array: two signature headers are not accepted.
    const sent = request.header;
    expect((await checkSupaqueueSignature({ ...request, header: [sent] })).ok).toBe(true);
    expect(await reason([sent, sent])).toBe("malformed");
    expect(await reason([])).toBe("missing");
    expect((await checkSupaqueueSignature({ ...request, header: `${request.header},v2=whatever` })).ok).toBe(
      true,
    );
    expect((await checkSupaqueueSignature({ ...request, header: ` t=${T} , ${v1} ` })).ok).toBe(true);
    await expect(verifySupaqueueSignature({ ...request, keys: [] })).rejects.toThrow(/no keys given/);
    await expect(verifySupaqueueSignature({ ...request, keys: [""] })).rejects.toThrow(/no keys given/);
  });
});

describe("the handler signs what it sends", () => {
  async function send(queue: Record<string, unknown>, jobHeaders: Record<string, string> = {}) {
    const fetched: Request[] = [];
    const handler = createHandler({
      secret: "s",
      now: () => AT_T,
      fetch: async (input, init) => {
        fetched.push(new Request(input, init));
        return new Response("ok");
      },
      report: async () => true,
    });
    const res = await handler(
      new Request("http://edge.test/", {
        method: "POST",
        headers: { "supaqueue-secret": "s" },
        body: JSON.stringify({
          current_job_id: 7,
          attempt: 1,
          job: { id: "00000000-0000-4000-8000-0000000000bb", payload: { a: "é" }, headers: jobHeaders },
          queue: {
            name: "q",
            url: "https://t.example/h?k=v",
            is_function: false,
            method: "POST",
            headers: {},
            timeout_ms: 1000,
            ...queue,
          },
        }),
      }),
    );
    expect(res.status).toBe(202);
    await handler.idle();
    const [request] = fetched;
    if (!request) throw new Error("nothing was fetched");
    return { request, body: await request.text() };
  }

  test("a queue with signing_keys sends a header that verifies against the request as received", async () => {
    const { request, body } = await send(
      { signing_keys: [NEW_KEY, OLD_KEY] },
      { "Supaqueue-Signature": "forged" },
    );
    const header = request.headers.get("supaqueue-signature");
    expect(header).toBe(
      `t=${T},v1=${expectedMac(NEW_KEY, T, "POST", "k=v", body)},v1=${expectedMac(OLD_KEY, T, "POST", "k=v", body)}`,
    );
    expect(body).toBe('{"a":"é"}');
    for (const keys of [[NEW_KEY], [OLD_KEY]]) {
      expect(
        await verifySupaqueueSignature({
          header,
          method: request.method,
          url: request.url,
          body,
          keys,
          now: AT_T,
        }),
      ).toBe(true);
    }
  });

  test("a queue without keys (null, absent or empty) sends no signature", async () => {
    for (const queue of [{ signing_keys: null }, {}, { signing_keys: [] }]) {
      const { request } = await send(queue);
      expect(request.headers.has("supaqueue-signature")).toBe(false);
    }
  });
});

test("the verifier runs unchanged in Deno, as a target's edge function would import it", async () => {
  const header = await signatureHeader({ keys: [NEW_KEY], method: "POST", url: URL_WITH_QUERY, body: BODY });
  const module = join(projectRoot(), "functions", "_shared", "verify_signature.ts");
  const script = `
    import { checkSupaqueueSignature } from ${JSON.stringify(`file://${module}`)};
    const common = { header: Deno.args[0], method: "POST", url: Deno.args[1], keys: [Deno.args[2]] };
    console.log(JSON.stringify([
      await checkSupaqueueSignature({ ...common, body: Deno.args[3] }),
      await checkSupaqueueSignature({ ...common, body: Deno.args[3] + " " }),
    ]));`;
  const { stdout } = await promisify(execFile)(
    DENO_BIN,
    [
      "eval",
      "--no-config",
      script,
      header,
      "http://localhost:9999/orders?tenant=acme&x=a%20b",
      NEW_KEY,
      BODY,
    ],
    { env: denoEnv() },
  );
  expect(JSON.parse(stdout)).toEqual([
    { ok: true, timestamp: expect.any(Number) },
    { ok: false, reason: "mismatch" },
  ]);
});
