import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A stand-in for the project's functions gateway (`https://<ref>.supabase.co/functions/v1/<name>`): requests for
 * execute_current_job go to the Deno process serving it; any other function name goes to `othersOrigin` (the
 * target servers), so queues whose target is an edge function of the project can be tested end to end.
 */
export interface Gateway {
  /** What supaqueue.configure(functions_url => ...) takes: http://127.0.0.1:PORT/functions/v1 */
  functionsUrl: string;
  stop(): Promise<void>;
}

export async function startGateway(executeOrigin: string, othersOrigin: string): Promise<Gateway> {
  const server = createServer((req, res) => {
    const path = req.url ?? "/";
    const origin = path.startsWith("/functions/v1/execute_current_job") ? executeOrigin : othersOrigin;
    const forwarded = request(
      new URL(path, origin),
      { method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forwarded.on("error", () => {
      // The function or target went away mid-call: end the client's connection the same way.
      res.destroy();
    });
    req.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    functionsUrl: `http://127.0.0.1:${port}/functions/v1`,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
