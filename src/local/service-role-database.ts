import type pg from "pg";
import type { Completion } from "../../functions/execute_current_job/call.ts";
import {
  type Database,
  isCallbackResult,
  type ReportAnswer,
} from "../../functions/execute_current_job/rpc.ts";
import { asRole } from "../db/transaction.ts";

/**
 * The database as execute_current_job reaches it, without PostgREST: each call is one transaction run as
 * `service_role`, the role the project's key maps to, calling the same public functions the deployed function posts
 * to (/rest/v1/rpc/...). Local mode, the tests that play the function, and the benchmark use it.
 */
export function serviceRoleDatabase(pool: pg.Pool): Database {
  return {
    async claim(ids, probe) {
      const { rows } = await asServiceRole(
        pool,
        "select public.supaqueue_claim_current_jobs($1::bigint[], $2::uuid) as calls",
        [ids, probe ?? null],
      );
      return (rows[0]?.calls as unknown[]) ?? [];
    },
    async completeAndClaim(outcomes: Completion[], claimWithinMs: number): Promise<ReportAnswer> {
      const { rows } = await asServiceRole(
        pool,
        "select public.supaqueue_complete_and_claim($1::jsonb, $2::integer) as answer",
        [JSON.stringify(outcomes), claimWithinMs],
      );
      return rows[0]?.answer as ReportAnswer;
    },
    async completeCallback(report) {
      const { rows } = await asServiceRole(
        pool,
        "select public.supaqueue_complete_callback($1, $2, $3, $4) as result",
        [report.token, report.status, report.body, report.error],
      );
      const result: unknown = rows[0]?.result;
      if (!isCallbackResult(result))
        throw new Error(`supaqueue_complete_callback answered ${String(result)}`);
      return result;
    },
  };
}

/** Runs one statement in its own transaction as service_role, as PostgREST runs an RPC. */
export function asServiceRole(pool: pg.Pool, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  return asRole(pool, "service_role", sql, params);
}
