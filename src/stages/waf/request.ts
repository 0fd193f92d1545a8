/**
 * The request as rules see it: collections built on first read, once per request, from the stage context and
 * (in phase 2) the body. Values are byte strings (latin1), like ModSecurity's.
 */

export interface Entry {
  /** The key as received (a header name, an argument name); '' for a single variable. */
  readonly key: string;
  readonly value: string;
}

export interface WafInput {
  readonly method: string;
  /** Path and query as received. */
  readonly rawTarget: string;
  /** Normalized path (what was routed on). */
  readonly path: string;
  readonly query: string;
  readonly protocol: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly remoteAddr: string;
}

export interface ParsedBody {
  readonly processor: 'URLENCODED' | 'JSON' | 'MULTIPART' | '';
  readonly raw: string;
  readonly args: Entry[];
  readonly files: Entry[];
  readonly fileSizes: Entry[];
  readonly partHeaders: Entry[];
  readonly error: string | undefined;
}

function safeDecode(s: string): string {
  if (s.indexOf('%') < 0 && s.indexOf('+') < 0) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '+') out += ' ';
    else if (c === '%' && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      out += String.fromCharCode(Number.parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else out += c;
  }
  return out;
}

/** `a=1&b=2` → entries, decoded as ModSecurity decodes arguments (percent and `+`). */
export function parseUrlEncoded(s: string): Entry[] {
  const out: Entry[] = [];
  if (s === '') return out;
  for (const part of s.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    out.push(
      eq < 0
        ? { key: safeDecode(part), value: '' }
        : { key: safeDecode(part.slice(0, eq)), value: safeDecode(part.slice(eq + 1)) },
    );
  }
  return out;
}

/** JSON → flat arguments (`json.a.b`, arrays by index), as ModSecurity's JSON body processor names them. */
export function flattenJson(v: unknown, prefix: string, out: Entry[], depth = 0): void {
  if (depth > 64) return;
  if (v === null || typeof v !== 'object') {
    // Strings are re-encoded as UTF-8 bytes, so rules see the bytes the client sent.
    out.push({ key: prefix, value: v === null ? '' : Buffer.from(String(v), 'utf8').toString('latin1') });
    return;
  }
  if (Array.isArray(v)) {
    v.forEach((x, i) => {
      flattenJson(x, `${prefix}.${i}`, out, depth + 1);
    });
    return;
  }
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    flattenJson(x, `${prefix}.${Buffer.from(k, 'utf8').toString('latin1')}`, out, depth + 1);
  }
}

function parseMultipart(raw: string, boundary: string, body: ParsedBody): string | undefined {
  const delim = `--${boundary}`;
  const parts = raw.split(delim);
  if (parts.length < 2) return 'multipart: no boundary found';
  for (let i = 1; i < parts.length; i++) {
    let p = parts[i]!;
    if (p.startsWith('--')) break;
    p = p.replace(/^\r?\n/, '');
    const sep = p.indexOf('\r\n\r\n') >= 0 ? p.indexOf('\r\n\r\n') : p.indexOf('\n\n');
    if (sep < 0) return 'multipart: part without headers';
    const head = p.slice(0, sep);
    let content = p.slice(sep + (p[sep] === '\r' ? 4 : 2));
    content = content.replace(/\r?\n$/, '');
    let name = '';
    let filename: string | undefined;
    const lines = head.split(/\r?\n/);
    for (const line of lines) {
      const m = /^content-disposition:(.*)$/i.exec(line);
      if (m !== null) {
        name = /\bname="([^"]*)"/i.exec(m[1]!)?.[1] ?? /\bname=([^;\s]*)/i.exec(m[1]!)?.[1] ?? '';
        filename = /\bfilename="([^"]*)"/i.exec(m[1]!)?.[1] ?? /\bfilename=([^;\s]*)/i.exec(m[1]!)?.[1];
      }
    }
    for (const line of lines) body.partHeaders.push({ key: name, value: line });
    if (filename !== undefined) {
      body.files.push({ key: name, value: filename });
      body.fileSizes.push({ key: name, value: String(content.length) });
    } else body.args.push({ key: name, value: content });
  }
  return undefined;
}

/** Parses a request body by its content type. */
export function parseBody(buf: Buffer, contentType: string): ParsedBody {
  const raw = buf.toString('latin1');
  const ct = contentType.toLowerCase();
  const body: ParsedBody & { error: string | undefined; processor: ParsedBody['processor'] } = {
    processor: '',
    raw,
    args: [],
    files: [],
    fileSizes: [],
    partHeaders: [],
    error: undefined,
  };
  if (ct.startsWith('application/x-www-form-urlencoded')) {
    body.processor = 'URLENCODED';
    body.args.push(...parseUrlEncoded(raw));
  } else if (/^application\/([a-z0-9.+-]*\+)?json\b/.test(ct)) {
    body.processor = 'JSON';
    try {
      flattenJson(JSON.parse(buf.toString('utf8')), 'json', body.args);
    } catch (err) {
      body.error = `JSON: ${(err as Error).message}`;
    }
  } else if (ct.startsWith('multipart/form-data')) {
    body.processor = 'MULTIPART';
    const b = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
    if (b === null) body.error = 'multipart: no boundary';
    else body.error = parseMultipart(raw, b[1] ?? b[2]!, body);
  }
  return body;
}

/** Cookie header(s) → entries. */
export function parseCookies(h: string | string[] | undefined): Entry[] {
  const out: Entry[] = [];
  if (h === undefined) return out;
  for (const line of Array.isArray(h) ? h : [h]) {
    for (const part of line.split(';')) {
      const p = part.trim();
      if (p === '') continue;
      const eq = p.indexOf('=');
      out.push(eq < 0 ? { key: p, value: '' } : { key: p.slice(0, eq), value: p.slice(eq + 1) });
    }
  }
  return out;
}
