import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** A Supabase CLI profile (SUPABASE_PROFILE=<file>) that sends its Management API calls to `apiUrl`. */
export function profileYaml(apiUrl: string): string {
  return `name: supaqueue-test\napi_url: ${apiUrl}\ndashboard_url: ${apiUrl}\nproject_host: supabase.co\n`;
}

/** One function as deployed through the fake: its metadata and every file the CLI uploaded. */
export interface DeployedFunction {
  slug: string;
  metadata: {
    entrypoint_path: string;
    import_map_path?: string;
    name: string;
    static_patterns?: string[];
    verify_jwt: boolean;
  };
  /** Uploaded path (e.g. supabase/functions/execute_current_job/index.ts) → content. */
  files: Map<string, string>;
  version: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  status: number;
}

/**
 * A local stand-in for the parts of Supabase's Management API that `supabase secrets set` and
 * `supabase functions deploy --use-api` use. It checks what the real API checks: the bearer token, the project,
 * the shape of the secrets body, and the deploy multipart (metadata JSON and one `file` part per source file).
 */
export class FakeManagementApi {
  readonly requests: RecordedRequest[] = [];
  readonly secrets = new Map<string, string>();
  readonly functions = new Map<string, DeployedFunction>();
  /** Every secrets body received, in order. */
  readonly secretBodies: unknown[] = [];
  private server: Server | undefined;
  url = "";

  constructor(
    readonly projectRef: string,
    readonly accessToken: string,
  ) {}

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      this.handle(req)
        .then(({ status, body }) => {
          this.requests.push({ method: req.method ?? "", path: req.url ?? "", status });
          res.writeHead(status, { "content-type": "application/json" });
          res.end(body === undefined ? "" : JSON.stringify(body));
        })
        .catch((error: unknown) => {
          res.writeHead(500, { "content-type": "application/json" });
          res.end(JSON.stringify({ message: String(error) }));
        });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }

  /** The profile file content that points the Supabase CLI here (SUPABASE_PROFILE=<file>). */
  profileYaml(): string {
    return profileYaml(this.url);
  }

  private async handle(req: IncomingMessage): Promise<{ status: number; body?: unknown }> {
    const url = new URL(req.url ?? "/", "http://localhost");
    const body = await readBody(req);
    if (req.headers.authorization !== `Bearer ${this.accessToken}`) {
      return { status: 401, body: { message: "Unauthorized" } };
    }
    const match = /^\/v1\/projects\/([^/]+)(\/.*)?$/.exec(url.pathname);
    if (!match) return { status: 404, body: { message: `no route ${url.pathname}` } };
    if (match[1] !== this.projectRef) return { status: 404, body: { message: "Project not found" } };
    const rest = match[2] ?? "";

    if (req.method === "GET" && rest === "") {
      return {
        status: 200,
        body: {
          id: this.projectRef,
          ref: this.projectRef,
          name: "test",
          status: "ACTIVE_HEALTHY",
          region: "eu-west-1",
        },
      };
    }
    if (req.method === "GET" && rest === "/functions") {
      return { status: 200, body: [...this.functions.values()].map((f) => functionJson(f)) };
    }
    if (req.method === "POST" && rest === "/secrets") {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString("utf8"));
      } catch {
        return { status: 400, body: { message: "body is not JSON" } };
      }
      this.secretBodies.push(parsed);
      const valid =
        Array.isArray(parsed) &&
        parsed.length > 0 &&
        parsed.every(
          (s) =>
            typeof s?.name === "string" &&
            typeof s?.value === "string" &&
            /^[A-Za-z_][A-Za-z0-9_]*$/.test(s.name) &&
            !s.name.startsWith("SUPABASE_"),
        );
      if (!valid)
        return {
          status: 400,
          body: { message: "expected [{name, value}] with names not starting SUPABASE_" },
        };
      for (const s of parsed as { name: string; value: string }[]) this.secrets.set(s.name, s.value);
      return { status: 201 };
    }
    if (req.method === "POST" && rest === "/functions/deploy") {
      return this.deploy(url.searchParams.get("slug"), req.headers["content-type"] ?? "", body);
    }
    return { status: 404, body: { message: `no route ${req.method} ${url.pathname}` } };
  }

  private async deploy(slug: string | null, contentType: string, body: Buffer) {
    if (!slug || !contentType.startsWith("multipart/form-data")) {
      return { status: 400, body: { message: "expected ?slug= and a multipart body" } };
    }
    const form = await new Response(new Uint8Array(body), {
      headers: { "content-type": contentType },
    }).formData();
    const metadataPart = form.get("metadata");
    if (typeof metadataPart !== "string") return { status: 400, body: { message: "missing metadata part" } };
    const metadata = JSON.parse(metadataPart) as DeployedFunction["metadata"];
    const files = new Map<string, string>();
    for (const part of form.getAll("file")) {
      if (typeof part === "string") return { status: 400, body: { message: "file parts must be files" } };
      files.set(part.name, await part.text());
    }
    if (
      metadata.name !== slug ||
      typeof metadata.verify_jwt !== "boolean" ||
      !files.has(metadata.entrypoint_path)
    ) {
      return {
        status: 400,
        body: { message: "metadata must name the slug, say verify_jwt, and point at an uploaded entrypoint" },
      };
    }
    const previous = this.functions.get(slug);
    const deployed: DeployedFunction = { slug, metadata, files, version: (previous?.version ?? 0) + 1 };
    this.functions.set(slug, deployed);
    return { status: 201, body: functionJson(deployed) };
  }
}

function functionJson(f: DeployedFunction) {
  return {
    id: `fn-${f.slug}`,
    slug: f.slug,
    name: f.metadata.name,
    version: f.version,
    status: "ACTIVE",
    verify_jwt: f.metadata.verify_jwt,
    entrypoint_path: f.metadata.entrypoint_path,
    created_at: 0,
    updated_at: 0,
  };
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
