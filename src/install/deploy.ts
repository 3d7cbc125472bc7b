import type pg from "pg";
import { loadConfig } from "../config/load.ts";
import { ConfigError, DEFAULT_MAX_CALL_TIMEOUT_MS, type QueueFile } from "../config/types.ts";
import { connect } from "../db/connect.ts";
import { reconcileQueues } from "./apply.ts";
import { trimFunctionsUrl } from "./deploy-settings.ts";
import { checkLines, runDoctor } from "./doctor.ts";
import type { Logger } from "./logger.ts";
import { type DeployOptions, type DeployResult, type Plan, planChangesQueues } from "./model.ts";
import { computePlan } from "./plan.ts";
import { planLines } from "./present.ts";
import { type ProbeResult, runProbe } from "./probe.ts";
import { functionsUrlForProject, installSchema } from "./schema.ts";
import { FUNCTION_NAME, stageWorkdir } from "./stage.ts";
import { readInstalledState } from "./state.ts";
import {
  type CliContext,
  checkAccess,
  deployFunction,
  findSupabaseCli,
  setFunctionSecret,
} from "./supabase-cli.ts";
import { checkTick, describeTick, enablePgCron } from "./tick.ts";

/** Everything was installed, but a probe did not come back: the loop is broken at `link`. */
class ProbeError extends Error {
  constructor(
    readonly link: string,
    detail: string,
  ) {
    super(
      `supaqueue: everything was installed, but the whole loop does not work yet: broken at ${link}. ${detail} (To deploy without this check: the action's input probe: false, or supaqueue deploy --skip-probe.)`,
    );
    this.name = "ProbeError";
  }
}

/**
 * Installs or upgrades Supaqueue on a project and brings its queues in line with supaqueue.yml:
 * validate the file → check the database and the plan (conflicts) → check the access token → migrations and the
 * Vault secret → the function's SUPAQUEUE_SECRET → deploy execute_current_job → reconcile queues and workers.
 * Nothing is changed until every check before it has passed. With dryRun it stops after the plan.
 */
export async function deploy(options: DeployOptions, log: Logger): Promise<DeployResult> {
  if (options.accessToken) log.secret(options.accessToken);
  if (options.supaqueueSecret) log.secret(options.supaqueueSecret);
  const functionsUrl = trimFunctionsUrl(options.functionsUrl ?? functionsUrlForProject(options.projectRef));
  const functionUrl = `${functionsUrl}/${FUNCTION_NAME}`;

  let config = await log.group(`Validate ${options.configFile}`, async () => {
    const file = readQueueFile(options, log);
    log.info(`${file.queues.length} queue(s): ${file.queues.map((q) => q.name).join(", ") || "none"}`);
    if (file.schedules.length > 0)
      log.info(`${file.schedules.length} schedule(s): ${file.schedules.map((s) => s.name).join(", ")}`);
    return file;
  });

  const client = await log.group("Connect to the database", async () => {
    const c = await connect(options.dbUrl);
    log.info("Connected.");
    return c;
  });
  try {
    const before = await log.group("Plan", async () => {
      const planned = await planAgainst(client, options, config, log);
      for (const line of planLines(planned.plan)) log.info(line);
      if (planned.functionsUrl !== null && planned.functionsUrl !== functionsUrl) {
        log.info(`functions URL: ${planned.functionsUrl} → ${functionsUrl}`);
      }
      return planned;
    });
    config = before.config;
    const plan = before.plan;
    // On a first install the URL is set along with everything else; afterwards a new one is a change of its own.
    const functionsUrlChanged = before.functionsUrl !== null && before.functionsUrl !== functionsUrl;

    if (options.dryRun) {
      log.info("Dry run: nothing was changed.");
      return {
        dryRun: true,
        schemaVersion: before.schemaVersion,
        migrations: plan.pendingMigrations,
        functionsUrl,
        functionUrl,
        plan,
        changed: plan.pendingMigrations.length > 0 || functionsUrlChanged || planChangesQueues(plan),
        functionsUrlChanged,
      };
    }
    if (!options.accessToken)
      throw new Error("supaqueue: access-token is required (it may be left out only for a dry run)");

    const workdir = stageWorkdir();
    try {
      const ctx: CliContext = await log.group("Check Supabase access", async () => {
        const cli = await findSupabaseCli(log);
        const c = {
          cli,
          projectRef: options.projectRef,
          accessToken: options.accessToken as string,
          workdir,
          log,
        };
        await checkAccess(c);
        return c;
      });

      const enabledPgCron = await log.group("Make sure tick() runs every second", async () => {
        const enabled = await enablePgCron(client, options.tick);
        log.info(
          options.tick === "external"
            ? "tick: external (your own scheduler calls select supaqueue.tick() every second)."
            : enabled
              ? "Enabled pg_cron (create extension pg_cron with schema pg_catalog)."
              : "pg_cron is enabled.",
        );
        return enabled;
      });

      const schema = await log.group("Apply migrations and the Vault secret", async () => {
        const installed = await installSchema(client, {
          functionsUrl,
          secret: options.supaqueueSecret,
          tick: options.tick,
          enabledPgCron,
        });
        log.secret(installed.secret);
        log.info(
          installed.applied.length > 0
            ? `Applied ${installed.applied.join(", ")}; schema version ${installed.version}.`
            : `Schema version ${installed.version}: no migration to apply.`,
        );
        log.info(`Vault secret supaqueue_secret ${installed.secretCreated ? "created" : "kept"}.`);
        log.info(describeTick(installed.tick));
        return installed;
      });

      await log.group("Set the function secrets SUPAQUEUE_SECRET and SUPAQUEUE_FUNCTIONS_URL", () =>
        setFunctionSecret(ctx, schema.secret, functionsUrl),
      );
      await log.group(`Deploy ${FUNCTION_NAME}`, () => deployFunction(ctx));

      const applied = await log.group("Reconcile queues, workers and schedules", async () => {
        const done = await reconcileQueues(client, config);
        for (const line of planLines(done, { done: true })) log.info(line);
        return done;
      });

      let probe: ProbeResult | undefined;
      if (options.probe) {
        probe = await log.group(
          "Probe the whole loop: database → pg_net → execute_current_job → database",
          async () => {
            const result = await runProbe(client, options.probeOptions);
            if (result.ok) log.info(`The probe came back in ${result.ms} ms: calls will go out.`);
            return result;
          },
        );
        if (!probe.ok) throw new ProbeError(probe.link, probe.message);
      }
      const checks = await log.group("Health", async () => {
        const found = (await runDoctor(client, { probe: false })).filter((c) => c.name !== "tick");
        for (const line of checkLines(found)) log.info(line);
        return found;
      });
      return {
        dryRun: false,
        schemaVersion: schema.version,
        migrations: schema.applied,
        functionsUrl,
        functionUrl,
        plan: applied,
        changed: schema.applied.length > 0 || functionsUrlChanged || planChangesQueues(applied),
        functionsUrlChanged,
        tick: schema.tick,
        probe,
        checks,
        secretCreated: schema.secretCreated,
      };
    } finally {
      workdir.remove();
    }
  } finally {
    await client.end().catch(() => {});
  }
}

function readQueueFile(options: DeployOptions, log: Logger, maxCallTimeoutMs?: number): QueueFile {
  const config = loadConfig(options.configPath, options.configFile, { env: options.env, maxCallTimeoutMs });
  // Header values and URLs that come from the environment are secrets: mask them before anything could print them.
  for (const queue of config.queues) {
    for (const header of queue.secretHeaders) log.secret(header.value);
    if (queue.urlSecret) log.secret(queue.urlSecret.value);
  }
  return config;
}

/**
 * Reads the database and plans against it. The file is checked again when the database allows a different
 * longest timeout than the default, and a file queue named like a hand-made queue stops the run here.
 */
async function planAgainst(
  client: pg.ClientBase,
  options: DeployOptions,
  config: QueueFile,
  log: Logger,
): Promise<{ config: QueueFile; plan: Plan; schemaVersion: number | null; functionsUrl: string | null }> {
  const state = await readInstalledState(client);
  // Before anything changes: a tick that cannot run as asked stops the run here, saying what to do.
  await checkTick(client, options.tick);
  let file = config;
  if (state.maxCallTimeoutMs !== null && state.maxCallTimeoutMs !== DEFAULT_MAX_CALL_TIMEOUT_MS) {
    file = readQueueFile(options, log, state.maxCallTimeoutMs);
  }
  const plan = computePlan(file, state);
  if (plan.conflicts.length > 0) throw new ConfigError(plan.conflicts);
  const version = state.appliedVersions.length > 0 ? Math.max(...state.appliedVersions) : null;
  return { config: file, plan, schemaVersion: version, functionsUrl: state.functionsUrl };
}
