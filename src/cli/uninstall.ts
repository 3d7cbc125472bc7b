import type pg from "pg";
import { transaction } from "../db/transaction.ts";
import { FUNCTION_NAME, stageWorkdir } from "../install/stage.ts";
import { deleteFunction, findSupabaseCli, unsetFunctionSecret } from "../install/supabase-cli.ts";
import { type CommandSpec, DB_URL_FLAG, type Parsed, requireDbUrl, stringFlag, UsageError } from "./args.ts";
import { withDatabase } from "./database.ts";
import type { TerminalLogger } from "./logger.ts";

export const UNINSTALL: CommandSpec = {
  name: "uninstall",
  brief: "remove Supaqueue from a database (and project)",
  summary:
    "remove Supaqueue: the supaqueue schema (queues, jobs, history), the functions public.supaqueue_* (the entry points of execute_current_job), the Vault secrets supaqueue_secret and supaqueue:*, the pg_cron jobs supaqueue*, and, with a project ref and token, the function secret and the execute_current_job function.",
  flags: {
    "db-url": DB_URL_FLAG,
    "project-ref": {
      type: "string",
      value: "REF",
      description:
        "Also unset SUPAQUEUE_SECRET and delete execute_current_job on this project (default: $SUPABASE_PROJECT_REF).",
    },
    "access-token": {
      type: "string",
      value: "TOKEN",
      description: "A Supabase personal access token for that (default: $SUPABASE_ACCESS_TOKEN).",
    },
    force: {
      type: "boolean",
      description: "Uninstall even while calls are in flight (their outcomes are lost).",
    },
  },
  notes: [
    "The database part is one transaction: it happens whole or not at all. Every job and its history is deleted.",
    "Without --force it refuses while calls are in flight; pause the queues first (select supaqueue.pause('<queue>')).",
  ],
};

interface UninstallResult {
  /** Calls in flight that stopped the uninstall (nothing was changed), or 0. */
  refusedInFlight: number;
  removedSchema: boolean;
  deletedSecrets: number;
  unscheduledCronJobs: number;
}

/**
 * Removes everything Supaqueue put in the database, in one transaction. The queue and current-job tables are
 * locked first, so no call can start between the in-flight check and the drop.
 */
async function uninstallDatabase(client: pg.ClientBase, force: boolean): Promise<UninstallResult> {
  return transaction(client, async (): Promise<UninstallResult> => {
    const schema = await client.query<{ ok: boolean }>(
      "select to_regclass('supaqueue.current_job') is not null as ok",
    );
    const installed = schema.rows[0]?.ok ?? false;
    if (installed) {
      await client.query("lock table supaqueue.queue, supaqueue.current_job in exclusive mode");
      const inFlight = await client.query<{ n: number }>(
        "select count(*)::int as n from supaqueue.current_job",
      );
      const n = inFlight.rows[0]?.n ?? 0;
      // Refused: the transaction changed nothing, and committing it releases the locks.
      if (n > 0 && !force) {
        return { refusedInFlight: n, removedSchema: false, deletedSecrets: 0, unscheduledCronJobs: 0 };
      }
    }
    const cron = await client.query<{ n: number }>(`
      select count(*)::int as n from pg_catalog.pg_extension where extname = 'pg_cron'`);
    let unscheduled = 0;
    if ((cron.rows[0]?.n ?? 0) > 0) {
      const { rows } = await client.query<{ n: number }>(
        "select count(cron.unschedule(jobid))::int as n from cron.job where starts_with(jobname, 'supaqueue')",
      );
      unscheduled = rows[0]?.n ?? 0;
    }
    let deleted = 0;
    const vault = await client.query<{ ok: boolean }>(
      "select to_regclass('vault.secrets') is not null as ok",
    );
    if (vault.rows[0]?.ok) {
      // supaqueue_secret, and every supaqueue:header:... and supaqueue:signing:... secret (pre-release names too).
      const result = await client.query(
        "delete from vault.secrets where starts_with(name, 'supaqueue_') or starts_with(name, 'supaqueue:')",
      );
      deleted = result.rowCount ?? 0;
    }
    await client.query(`
      set local client_min_messages = warning;
      -- The entry points of execute_current_job in public (supaqueue_*): whatever migrations made.
      do $$
      declare f regprocedure;
      begin
        for f in select p.oid::regprocedure from pg_proc p
                 where p.pronamespace = 'public'::regnamespace and p.proname like 'supaqueue_%' loop
          execute format('drop function %s', f);
        end loop;
      end $$;
      drop schema if exists supaqueue cascade;`);
    return {
      refusedInFlight: 0,
      removedSchema: installed,
      deletedSecrets: deleted,
      unscheduledCronJobs: unscheduled,
    };
  });
}

export async function runUninstall(
  parsed: Parsed,
  env: Record<string, string | undefined>,
  log: TerminalLogger,
): Promise<number> {
  const url = requireDbUrl("uninstall", parsed.values, env);
  const projectRef = stringFlag(parsed.values, "project-ref", env, ["SUPABASE_PROJECT_REF"]);
  const accessToken = stringFlag(parsed.values, "access-token", env, ["SUPABASE_ACCESS_TOKEN"]);
  if (accessToken) log.secret(accessToken);
  if (projectRef && !accessToken) {
    throw new UsageError(
      "uninstall",
      "--project-ref needs --access-token (or $SUPABASE_ACCESS_TOKEN) to remove the function and its secret",
    );
  }
  log.secret(url);

  const result = await withDatabase(url, (client) =>
    log.group("Remove Supaqueue from the database", () =>
      uninstallDatabase(client, Boolean(parsed.values.force)),
    ),
  );
  if (result.refusedInFlight > 0) {
    log.error(
      `${result.refusedInFlight} call(s) are in flight; nothing was changed. Wait for them (supaqueue status), pause the queues first, or pass --force to lose their outcomes.`,
    );
    return 1;
  }
  log.info(
    result.removedSchema
      ? "Dropped the supaqueue schema and the public.supaqueue_* functions."
      : "The supaqueue schema was not there (already uninstalled).",
  );
  log.info(
    `Deleted ${result.deletedSecrets} Vault secret(s) named supaqueue_*; unscheduled ${result.unscheduledCronJobs} pg_cron job(s).`,
  );

  if (projectRef && accessToken) {
    await log.group(`Remove ${FUNCTION_NAME} and SUPAQUEUE_SECRET from project ${projectRef}`, async () => {
      // The same runner as deploy: token in the environment, and a staged workdir as the CLI's working
      // directory, so it leaves no supabase/.temp behind in the folder it was started from.
      const workdir = stageWorkdir();
      try {
        const ctx = { cli: await findSupabaseCli(log), projectRef, accessToken, workdir, log };
        await unsetFunctionSecret(ctx);
        await deleteFunction(ctx);
      } finally {
        workdir.remove();
      }
    });
  } else {
    log.info(
      `The edge function ${FUNCTION_NAME} and its SUPAQUEUE_SECRET were left on the project: pass --project-ref and --access-token to remove them too.`,
    );
  }
  log.info("Supaqueue is uninstalled.");
  return 0;
}
