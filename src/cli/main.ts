import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import pino, { type Logger } from 'pino';
import { type AdminSource, createAdminServer, listenAdmin } from '../admin/server.js';
import { configJsonSchema, formatConfigErrors, loadConfigFile } from '../config/index.js';
import { supervisorMetricsText } from '../observability/metrics.js';
import {
  generateApiKey,
  hashApiKey,
  hashPassword,
  SCRYPT_LIMITS,
  SCRYPT_MAX_MEMORY,
} from '../stages/credentials.js';
import { ClusterApplier } from './cluster-primary.js';
import { runWorker } from './cluster-worker.js';
import { importOpenApi } from './import-openapi.js';
import { LocalApplier } from './run-single.js';
import { type Applier, Supervisor } from './supervisor.js';
import { parseInterval, runTop } from './top.js';

const VERSION: string = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
).version;

const HELP: Record<string, string> = {
  main: `trellis ${VERSION}: an API gateway and service mesh

Usage: trellis <command> [options]

Commands:
  gateway --config FILE [--workers N]   run the gateway
  validate FILE                         check a config file; exit 1 and list every error if invalid
  schema                                print the JSON Schema of the config file
  top [--admin URL]                     live requests/s, success rate and latency per route and service
  hash-key [--generate]                 hash an API key (read from stdin) for consumers[].credentials.apiKeys
  hash-password [--cost N]              hash a password (read from stdin) for consumers[].credentials.basic
  import openapi FILE [--out FILE]      write a config (routes, validation, versions) for an OpenAPI document

Options:
  -h, --help      show help (also after a command)
  -v, --version   print the version
`,
  gateway: `Usage: trellis gateway --config FILE [--workers N] [--log-level LEVEL]

Runs the gateway with FILE (YAML or JSON). The file is watched and SIGHUP reloads it; an invalid new
version is rejected and the running one keeps serving. SIGTERM drains in-flight requests and exits 0.

Options:
  -c, --config FILE      config file (required)
  -w, --workers N        processes serving traffic (default: number of CPUs; 1 runs in this process)
      --log-level LEVEL  trace, debug, info (default), warn, error
  -h, --help             show this help
  -v, --version          print the version
`,
  validate: `Usage: trellis validate FILE

Exits 0 when FILE is a valid config. Otherwise exits 1 and prints every error as
FILE:LINE:COLUMN PATH: what was expected.

Options:
  -h, --help      show this help
  -v, --version   print the version
`,
  schema: `Usage: trellis schema

Prints the JSON Schema (draft 2020-12) of the config file, for editors:
  trellis schema > trellis.schema.json
  # then, at the top of a YAML config:  # yaml-language-server: $schema=./trellis.schema.json

Options:
  -h, --help      show this help
  -v, --version   print the version
`,
  top: `Usage: trellis top [--admin URL] [--token TOKEN] [--interval 1s] [--once]

Scrapes the admin API's /metrics every interval and shows, per route and per service, requests per second,
success rate (not 5xx and no Trellis error), and p50 / p99 latency over the last interval, busiest first.
Refreshes in place; q or Ctrl-C quits.

Options:
      --admin URL        the admin listener (default http://127.0.0.1:9901)
      --token TOKEN      bearer token when admin.token is set (default: $TRELLIS_ADMIN_TOKEN)
      --interval TIME    time between scrapes: 1s (default), 500ms, 2s, ...
      --once             print one table after two scrapes and exit
  -h, --help             show this help
  -v, --version          print the version
`,
};

HELP['hash-key'] = `Usage: trellis hash-key [--generate] [KEY]

Prints the hash of an API key for consumers[].credentials.apiKeys[].hash: sha256:<hex>. The key is read from
stdin (its first line), so that it stays out of the shell history; a KEY argument works too.
  printf %s "$KEY" | trellis hash-key
With --generate, makes a new random key (256 bits) and prints the key and its hash; give the key to the client,
put the hash in the config. To rotate, add the new hash beside the old one and give the old one an \`expires\`.

Options:
      --generate  make a new key instead of reading one
  -h, --help      show this help
`;
HELP.import = `Usage: trellis import openapi FILE [--service NAME] [--out FILE] [options]

Writes a Trellis config for an OpenAPI 3.0 or 3.1 document (YAML or JSON): one route per operation, named from
its operationId and matched by its path template and method; a service for the API's server; an \`openapi\`
policy that validates requests against the document (docs/openapi.md); and when the server URL is a version
(\`https://api.example.com/v2\`) or --api-version says so, a versioned API (docs/api-versions.md).
The output passes \`trellis validate\`; check its listener and service endpoint, then edit to taste.

Options:
      --service NAME       service and API name (default: from info.title)
      --out FILE           write the config to FILE (default: stdout); the document path is made relative to it
      --upstream URL       the service endpoint (default: the document's server URL, else http://127.0.0.1:8080)
      --api-version NAME   make the routes one version of a versioned API
      --select HOW         how requests name the version: path (default), header:NAME, query:NAME, media:VENDOR
      --no-validate        leave out the openapi validation policy
  -h, --help               show this help
`;
HELP['hash-password'] = `Usage: trellis hash-password [--cost N]

Reads a password from stdin (its first line) and prints its scrypt hash for
consumers[].credentials.basic.passwordHash: $scrypt$ln=N,r=8,p=1$<salt>$<hash>.
  printf %s "$PASSWORD" | trellis hash-password

Options:
      --cost N    log2 of scrypt's N, 10 to 18 (default 15: 32 MiB and some tens of ms per check)
  -h, --help      show this help
`;

/** The first line of stdin, without its line break. */
async function readSecretLine(what: string): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write(`${what} (then Enter): `);
  let data = '';
  for await (const chunk of process.stdin) {
    data += String(chunk);
    if (data.includes('\n')) break;
  }
  const nl = data.indexOf('\n');
  return (nl === -1 ? data : data.slice(0, nl)).replace(/\r$/, '');
}

function out(s: string): void {
  process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
}

function fail(s: string, code = 2): number {
  process.stderr.write(s.endsWith('\n') ? s : `${s}\n`);
  return code;
}

export async function main(argv: string[]): Promise<number> {
  if (cluster.isWorker && process.env.TRELLIS_WORKER === '1') {
    runWorker(createLogger(process.env.TRELLIS_LOG_LEVEL ?? 'info'));
    return -1; // keep running
  }
  const [command, ...rest] = argv;
  if (command === undefined) return fail(HELP.main!);
  if (command === '-h' || command === '--help' || command === 'help') {
    out(HELP.main!);
    return 0;
  }
  if (command === '-v' || command === '--version') {
    out(VERSION);
    return 0;
  }
  const help = HELP[command];
  if (!help || command === 'main') return fail(`trellis: unknown command "${command}"\n\n${HELP.main}`);
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
        ...(command === 'gateway'
          ? {
              config: { type: 'string', short: 'c' },
              workers: { type: 'string', short: 'w' },
              'log-level': { type: 'string' },
            }
          : {}),
        ...(command === 'hash-key' ? { generate: { type: 'boolean' } } : {}),
        ...(command === 'hash-password' ? { cost: { type: 'string' } } : {}),
        ...(command === 'import'
          ? {
              service: { type: 'string' },
              out: { type: 'string', short: 'o' },
              upstream: { type: 'string' },
              'api-version': { type: 'string' },
              select: { type: 'string' },
              'no-validate': { type: 'boolean' },
            }
          : {}),
        ...(command === 'top'
          ? {
              admin: { type: 'string' },
              token: { type: 'string' },
              interval: { type: 'string' },
              once: { type: 'boolean' },
            }
          : {}),
      },
    });
  } catch (err) {
    return fail(`trellis ${command}: ${(err as Error).message}\n\n${help}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out(help);
    return 0;
  }
  if (values.version) {
    out(VERSION);
    return 0;
  }
  switch (command) {
    case 'schema':
      out(JSON.stringify(configJsonSchema(), null, 2));
      return 0;
    case 'hash-key': {
      if (positionals.length > 1 || (values.generate && positionals.length > 0))
        return fail(`trellis hash-key: expected at most one KEY, and none with --generate\n\n${help}`);
      if (values.generate) {
        const key = generateApiKey();
        out(`key:  ${key}\nhash: ${hashApiKey(key)}`);
        return 0;
      }
      const key = positionals[0] ?? (await readSecretLine('API key'));
      if (key === '') return fail('trellis hash-key: the key is empty');
      out(hashApiKey(key));
      return 0;
    }
    case 'hash-password': {
      if (positionals.length > 0)
        return fail(
          `trellis hash-password: the password is read from stdin, not the command line\n\n${help}`,
        );
      const cost = Number(values.cost ?? 15);
      // r is 8: the largest cost whose 128·N·r bytes stay within what the config accepts.
      const [lo] = SCRYPT_LIMITS.ln;
      const hi = Math.log2(SCRYPT_MAX_MEMORY / (128 * 8));
      if (!Number.isInteger(cost) || cost < lo || cost > hi)
        return fail(
          `trellis hash-password: --cost expects a whole number from ${lo} to ${hi}, got "${values.cost}"`,
        );
      const password = await readSecretLine('password');
      if (password === '') return fail('trellis hash-password: the password is empty');
      out(hashPassword(password, { ln: cost }));
      return 0;
    }
    case 'import': {
      const [what, file, ...more] = positionals;
      if (what !== 'openapi' || file === undefined || more.length > 0)
        return fail(`trellis import: expected "openapi FILE"\n\n${help}`);
      try {
        const text = importOpenApi(file, {
          service: values.service as string | undefined,
          out: values.out as string | undefined,
          upstream: values.upstream as string | undefined,
          apiVersion: values['api-version'] as string | undefined,
          select: values.select as string | undefined,
          noValidate: values['no-validate'] === true,
        });
        if (values.out === undefined) process.stdout.write(text);
        else out(`${values.out}: written`);
        return 0;
      } catch (err) {
        process.stderr.write(`trellis import openapi: ${(err as Error).message}\n`);
        return 1;
      }
    }
    case 'validate': {
      const file = positionals[0];
      if (!file || positionals.length > 1) return fail(`trellis validate: expected one FILE\n\n${help}`);
      const r = await loadConfigFile(file);
      if (!r.ok) {
        process.stderr.write(`${formatConfigErrors(r.errors)}\n`);
        return 1;
      }
      out(
        `${file}: valid (${r.config.listeners.length} listeners, ${r.config.routes.length} routes, ${r.config.services.length} services)`,
      );
      return 0;
    }
    case 'top': {
      if (positionals.length > 0)
        return fail(`trellis top: unexpected argument "${positionals[0]}"\n\n${help}`);
      const interval = parseInterval((values.interval as string | undefined) ?? '1s');
      if (interval === undefined)
        return fail(
          `trellis top: --interval expects a time such as 1s or 500ms (at least 100ms), got "${values.interval}"`,
        );
      return runTop({
        admin: (values.admin as string | undefined) ?? 'http://127.0.0.1:9901',
        token: (values.token as string | undefined) ?? process.env.TRELLIS_ADMIN_TOKEN,
        intervalMs: interval,
        once: values.once === true,
      });
    }
    case 'gateway': {
      const file = values.config as string | undefined;
      if (!file || positionals.length > 0)
        return fail(`trellis gateway: --config FILE is required\n\n${help}`);
      let workers = availableParallelism();
      if (values.workers !== undefined) {
        workers = Number(values.workers);
        if (!Number.isInteger(workers) || workers < 1 || workers > 256)
          return fail(
            `trellis gateway: --workers expects a whole number from 1 to 256, got "${values.workers}"`,
          );
      }
      const level = (values['log-level'] as string | undefined) ?? process.env.TRELLIS_LOG_LEVEL ?? 'info';
      if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(level))
        return fail(`trellis gateway: unknown --log-level "${level}"`);
      process.env.TRELLIS_LOG_LEVEL = level;
      return runGateway(file, workers, createLogger(level));
    }
  }
  return 2;
}

function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.') || address === 'localhost';
}

function createLogger(level: string): Logger {
  // Operational logs go to stderr; stdout is left to the access log.
  return pino(
    { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination(2),
  );
}

async function runGateway(file: string, workers: number, log: Logger): Promise<number> {
  const supervisor = new Supervisor(file, log);
  const first = await supervisor.loadInitial();
  if (!first.ok) return fail(first.message, 1);
  const applier: Applier = workers === 1 ? new LocalApplier(log) : new ClusterApplier(workers, log);
  supervisor.attach(applier);
  const { config, version, hash } = first.active;
  try {
    await applier.apply(config, version, hash);
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'could not start');
    await applier.drain(0).catch(() => {});
    return 1;
  }

  let admin: ReturnType<typeof createAdminServer> | undefined;
  if (config.admin.enabled) {
    // metrics() and runtime() come from the applier (run-single.ts, cluster-primary.ts).
    const runtime = applier as Applier & Partial<Pick<AdminSource, 'metrics' | 'runtime'>>;
    admin = createAdminServer({
      ready: () => applier.ready(),
      status: () => applier.status(),
      configView: () => supervisor.configView({ workers: applier.status().workers }),
      config: () => supervisor.active?.config,
      metrics: () =>
        runtime
          .metrics?.()
          ?.then((m) => ({ ...m, body: m.body + supervisorMetricsText(supervisor.rejected) })),
      runtime: () => runtime.runtime?.() ?? Promise.resolve([]),
    });
    try {
      const port = await listenAdmin(admin, config.admin.address, config.admin.port);
      log.info({ address: config.admin.address, port }, 'admin listening');
      if (!isLoopback(config.admin.address)) {
        log.warn(
          { address: config.admin.address },
          'the admin listener is reachable beyond this machine; it shows the config (secrets redacted)',
        );
      }
    } catch (err) {
      log.fatal({ err: (err as Error).message }, 'admin listener failed');
      await applier.drain(0);
      return 1;
    }
  }
  supervisor.watchFile();
  process.on('SIGHUP', () => void supervisor.reload('SIGHUP'));
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    const deadline = supervisor.active?.config.gateway.drainTimeout ?? 30_000;
    log.info({ signal, deadlineMs: deadline }, 'draining');
    supervisor.stopWatching();
    await applier.drain(deadline);
    admin?.close();
    admin?.closeAllConnections();
    log.info('stopped');
    log.flush();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  const status = applier.status();
  log.info({ version, workers, listeners: status.workers }, 'gateway started');
  return -1;
}
