// Records the reference verdicts for the WAF corpus: every request of test/fixtures/waf-corpus/requests.json sent
// to Apache 2.4 + ModSecurity 2.9 + OWASP CRS 3.3 (Debian 12: apt-get install apache2 libapache2-mod-security2
// modsecurity-crs) at paranoia level 1, inbound threshold 5, request bodies on, in front of a 200-answering upstream.
// Writes test/fixtures/waf-corpus/modsecurity.json: per request the status and the rule ids ModSecurity logged.
//
//   node scripts/waf-reference.js [--port 18480] [--keep]
//
// Apache runs from a private ServerRoot under the OS temp dir, on loopback, and is stopped at the end (--keep
// leaves it and the temp dir for inspection). Nothing system-wide is changed.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i === -1 ? dflt : args[i + 1];
};
const PORT = Number(opt('--port', '18480'));
const KEEP = args.includes('--keep');
const HOST = 'api.example.com';
const MODULES = '/usr/lib/apache2/modules';
const CRS = '/usr/share/modsecurity-crs/rules';
const ALLOWED_METHODS = 'GET HEAD POST OPTIONS PUT PATCH DELETE';

const dir = fileURLToPath(new URL('../test/fixtures/waf-corpus/', import.meta.url));
const requests = JSON.parse(readFileSync(join(dir, 'requests.json'), 'utf8'));

for (const f of [`${MODULES}/mod_security2.so`, `${CRS}/REQUEST-949-BLOCKING-EVALUATION.conf`]) {
  if (!existsSync(f)) {
    process.stderr.write(
      `waf-reference: ${f} missing (apt-get install apache2 libapache2-mod-security2 modsecurity-crs)\n`,
    );
    process.exit(2);
  }
}

const version = (cmd, re) => {
  try {
    return (execFileSync(cmd[0], cmd.slice(1), { encoding: 'utf8' }).match(re) ?? [])[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
};
const apacheVersion = version(['apache2', '-v'], /Apache\/(\S+)/);
const modsecVersion = version(['dpkg-query', '-W', '-f', '${Version}', 'libapache2-mod-security2'], /(.+)/);
const crsVersion = version(['dpkg-query', '-W', '-f', '${Version}', 'modsecurity-crs'], /(.+)/);

// The upstream: 200 for everything, after reading the body.
const upstream = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '11' });
    res.end('{"ok":true}');
  });
});
await new Promise((r) => upstream.listen(0, '127.0.0.1', r));
const upPort = upstream.address().port;

const root = mkdtempSync(join(tmpdir(), 'trellis-waf-ref-'));
mkdirSync(join(root, 'tmp'), { mode: 0o777 });
const errorLog = join(root, 'error.log');
const conf = join(root, 'httpd.conf');
// The base ModSecurity settings are Debian's modsecurity.conf-recommended (rules 200000-200004 included: JSON
// and XML body processors, refusal of unparsable bodies), then what crs-setup.conf sets, then the CRS.
writeFileSync(
  conf,
  `ServerRoot ${root}
ServerName ${HOST}
Listen 127.0.0.1:${PORT}
PidFile ${root}/httpd.pid
ErrorLog ${errorLog}
LogLevel warn
LoadModule mpm_event_module ${MODULES}/mod_mpm_event.so
LoadModule authz_core_module ${MODULES}/mod_authz_core.so
LoadModule unique_id_module ${MODULES}/mod_unique_id.so
LoadModule proxy_module ${MODULES}/mod_proxy.so
LoadModule proxy_http_module ${MODULES}/mod_proxy_http.so
LoadModule security2_module ${MODULES}/mod_security2.so
StartServers 1
ServerLimit 1
ThreadsPerChild 4
MaxRequestWorkers 4
MinSpareThreads 1
MaxSpareThreads 4
AllowEncodedSlashes NoDecode
TraceEnable extended
KeepAlive Off

SecRuleEngine On
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\\+|/)|text/)xml" \\
  "id:'200000',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" \\
  "id:'200001',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyInMemoryLimit 131072
SecRequestBodyLimitAction Reject
SecRule REQBODY_ERROR "!@eq 0" \\
  "id:'200002',phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',severity:2"
SecRule MULTIPART_STRICT_ERROR "!@eq 0" \\
  "id:'200003',phase:2,t:none,log,deny,status:400,msg:'Multipart request body failed strict validation'"
SecRule MULTIPART_UNMATCHED_BOUNDARY "!@eq 0" \\
  "id:'200004',phase:2,t:none,log,deny,msg:'Multipart parser detected a possible unmatched boundary.'"
SecPcreMatchLimit 100000
SecPcreMatchLimitRecursion 100000
SecRule TX:/^MSC_/ "!@streq 0" "id:'200005',phase:2,t:none,deny,msg:'ModSecurity internal error flagged'"
SecResponseBodyAccess Off
SecTmpDir ${root}/tmp
SecDataDir ${root}/tmp
SecAuditEngine Off
SecArgumentSeparator &
SecCookieFormat 0
SecUnicodeMapFile /etc/modsecurity/unicode.mapping 20127
SecStatusEngine Off

SecDefaultAction "phase:1,log,auditlog,pass"
SecDefaultAction "phase:2,log,auditlog,pass"
SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=1"
SecAction "id:900110,phase:1,nolog,pass,t:none,setvar:tx.inbound_anomaly_score_threshold=5,setvar:tx.outbound_anomaly_score_threshold=4"
SecAction "id:900200,phase:1,nolog,pass,t:none,setvar:'tx.allowed_methods=${ALLOWED_METHODS}'"
SecAction "id:900990,phase:1,nolog,pass,t:none,setvar:tx.crs_setup_version=334"
Include ${CRS}/*.conf

ProxyPass / http://127.0.0.1:${upPort}/ nocanon
ProxyPreserveHost On
`,
);

const apachectl = (verb) => execFileSync('apache2', ['-f', conf, '-k', verb], { stdio: 'inherit' });
let started = false;
async function stop() {
  if (started && !KEEP) {
    try {
      apachectl('stop');
    } catch {}
    started = false;
  }
  upstream.close();
  upstream.closeAllConnections();
  if (!KEEP) rmSync(root, { recursive: true, force: true });
}

/** The exact bytes both engines receive for one corpus request. */
function raw(r) {
  const body = r.body === undefined ? undefined : Buffer.from(r.body, 'utf8');
  let head = `${r.method} ${r.target} HTTP/1.1\r\nHost: ${HOST}\r\n`;
  for (const [k, v] of r.headers) head += `${k}: ${v}\r\n`;
  if (body !== undefined && !r.headers.some(([k]) => k.toLowerCase() === 'content-length'))
    head += `Content-Length: ${body.length}\r\n`;
  head += 'Connection: close\r\n\r\n';
  return body === undefined
    ? Buffer.from(head, 'latin1')
    : Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

/** Sends the bytes, answers the status (0: closed without a response). */
function send(bytes) {
  return new Promise((resolve) => {
    const s = connect(PORT, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => s.destroy(), 10_000);
    s.on('data', (c) => {
      got += c.toString('latin1');
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(got);
      resolve(m ? Number(m[1]) : 0);
    });
    s.write(bytes);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

try {
  apachectl('start');
  started = true;
  for (let i = 0; i < 50 && !(await send(Buffer.from('GET /ready HTTP/1.1\r\nHost: x\r\n\r\n'))); i++)
    await sleep(100);
  const verdicts = {};
  for (const r of requests) {
    const before = existsSync(errorLog) ? statSync(errorLog).size : 0;
    const status = await send(raw(r));
    await sleep(25); // the logging phase runs after the response
    const log = readFileSync(errorLog).subarray(before).toString('utf8');
    const rules = [];
    const http = [];
    for (const line of log.split('\n')) {
      if (line.includes('ModSecurity:')) {
        const id = /\[id "(\d+)"\]/.exec(line);
        if (id && !rules.includes(Number(id[1]))) rules.push(Number(id[1]));
      } else if (line.includes('[client ')) {
        const ah = /\b(AH\d{5}): ([^,\n]{0,120})/.exec(line);
        if (ah) http.push(`${ah[1]}: ${ah[2]}`);
      }
    }
    verdicts[r.id] = { status, rules, ...(http.length > 0 ? { http } : {}) };
  }
  const refused = Object.values(verdicts).filter((v) => v.status !== 200).length;
  writeFileSync(
    join(dir, 'modsecurity.json'),
    `${JSON.stringify(
      {
        reference: `Apache ${apacheVersion}, ModSecurity ${modsecVersion}, OWASP CRS ${crsVersion} (Debian 12)`,
        settings: `SecRuleEngine On, request bodies on, modsecurity.conf-recommended rules 200000-200005, paranoia level 1, inbound threshold 5, allowed methods ${ALLOWED_METHODS}`,
        generated: new Date().toISOString().slice(0, 10),
        command: 'node scripts/waf-reference.js',
        verdicts,
      },
      null,
      2,
    )}\n`,
  );
  // The committed fixture is in the repository's format (biome), so a regeneration diffs only what changed.
  execFileSync('npx', ['biome', 'format', '--write', join(dir, 'modsecurity.json')], { stdio: 'ignore' });
  process.stdout.write(
    `${requests.length} requests, ${refused} refused by ModSecurity/Apache → ${dir}modsecurity.json\n`,
  );
} finally {
  await stop();
}
