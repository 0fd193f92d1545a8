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
  /** Why the body could not be parsed (REQBODY_ERROR, REQBODY_ERROR_MSG). */
  readonly error: string | undefined;
  /** A multipart body's flags (MULTIPART_*); undefined for other bodies. */
  multipart: MultipartFlags | undefined;
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

/**
 * What ModSecurity's multipart parser flags about a body (its MULTIPART_* variables): each is legal enough to
 * parse but is a way to make the WAF and the application read the body differently, so its recommended rules
 * refuse them (MULTIPART_STRICT_ERROR: any of them, or a parse error).
 */
export interface MultipartFlags {
  /** A parse error (also REQBODY_ERROR). */
  error: boolean;
  boundaryQuoted: boolean;
  boundaryWhitespace: boolean;
  dataBefore: boolean;
  dataAfter: boolean;
  headerFolding: boolean;
  /** A part header or boundary line ending in a bare LF. */
  lfLine: boolean;
  crlfLine: boolean;
  missingSemicolon: boolean;
  invalidQuoting: boolean;
  invalidPart: boolean;
  invalidHeaderFolding: boolean;
  /** A line starting like a boundary (or holding `--boundary`) that is not one. */
  unmatchedBoundary: boolean;
}

/** MULTIPART_STRICT_ERROR: the flags ModSecurity counts as a strict-validation failure. */
export function multipartStrictError(f: MultipartFlags): boolean {
  return (
    f.error ||
    f.boundaryQuoted ||
    f.boundaryWhitespace ||
    f.dataBefore ||
    f.dataAfter ||
    f.headerFolding ||
    f.lfLine ||
    f.missingSemicolon ||
    f.invalidQuoting ||
    f.invalidPart ||
    f.invalidHeaderFolding
  );
}

function noFlags(): MultipartFlags {
  return {
    error: false,
    boundaryQuoted: false,
    boundaryWhitespace: false,
    dataBefore: false,
    dataAfter: false,
    headerFolding: false,
    lfLine: false,
    crlfLine: false,
    missingSemicolon: false,
    invalidQuoting: false,
    invalidPart: false,
    invalidHeaderFolding: false,
    unmatchedBoundary: false,
  };
}

/** Occurrences of `boundary` (any case) followed somewhere by `=`. */
function boundaryParams(s: string): number {
  const low = s.toLowerCase();
  let n = 0;
  for (let at = low.indexOf('boundary'); at >= 0; at = low.indexOf('boundary', at + 8))
    if (low.indexOf('=', at + 8) >= 0) n++;
  return n;
}

const BOUNDARY_SPECIALS = '()<>@,;:\\"/[]?=';

/**
 * The boundary from a multipart Content-Type, with the checks ModSecurity's parser makes (one `boundary`
 * parameter, after at most one `;`; the value is the rest of the header, quoted whole or not at all, printable
 * ASCII without tspecials). A string is the error.
 */
function multipartBoundary(ct: string, f: MultipartFlags): string {
  if (ct.length > 1024) return 'multipart: Content-Type too long';
  if (boundaryParams(ct) > 1) return 'multipart: several boundary parameters in Content-Type';
  const at = ct.indexOf('boundary');
  if (at < 0) return 'multipart: no boundary in Content-Type';
  let semicolons = 0;
  for (let i = 'multipart/form-data'.length; i < at; i++) {
    const c = ct[i]!;
    if (/\s/.test(c)) continue;
    if (c === ';' && semicolons === 0) semicolons++;
    else return 'multipart: malformed boundary parameter in Content-Type';
  }
  if (semicolons === 0) f.missingSemicolon = true;
  const eq = ct.indexOf('=', at + 8);
  if (eq < 0) return 'multipart: malformed boundary parameter in Content-Type';
  for (let i = at + 8; i < eq; i++) {
    if (!/\s/.test(ct[i]!)) return 'multipart: malformed boundary parameter name in Content-Type';
    f.boundaryWhitespace = true;
  }
  let b = ct.slice(eq + 1);
  if (/^\s/.test(b)) f.boundaryWhitespace = true;
  if (b.length >= 2 && b[0] === '"' && b[b.length - 1] === '"') {
    b = b.slice(1, -1);
    f.boundaryQuoted = true;
  } else if (b[0] === '"' || (b.length >= 2 && b[b.length - 1] === '"'))
    return 'multipart: badly quoted boundary in Content-Type';
  if (boundaryParams(b) !== 0) return 'multipart: boundary parameter inside the boundary';
  for (let i = 0; i < b.length; i++) {
    const c = b.charCodeAt(i);
    if (c < 32 || c > 126 || BOUNDARY_SPECIALS.includes(b[i]!))
      return 'multipart: invalid character in the boundary';
  }
  if (b === '') return 'multipart: empty boundary';
  return b;
}

/** `form-data; name="a"; filename="b"` → name and filename, or an error number (as ModSecurity's parser). */
function contentDisposition(v: string, f: MultipartFlags): { name?: string; filename?: string } | number {
  if (!v.startsWith('form-data')) return -1;
  let p = 9;
  const ws = () => {
    while (v[p] === ' ' || v[p] === '\t') p++;
  };
  ws();
  if (p >= v.length) return {};
  if (v[p] !== ';') return -2;
  p++;
  const out: { name?: string; filename?: string } = {};
  while (p < v.length) {
    ws();
    if (p >= v.length) return -3;
    const start = p;
    while (p < v.length && v[p] !== '=' && v[p] !== ' ' && v[p] !== '\t') p++;
    if (p >= v.length) return -4;
    const key = v.slice(start, p);
    ws();
    if (v[p] !== '=') return -13;
    p++;
    ws();
    if (p >= v.length) return -6;
    let value = '';
    const q = v[p];
    if (q === '"' || q === "'") {
      if (q === "'") f.invalidQuoting = true;
      p++;
      let closed = false;
      while (p < v.length) {
        const c = v[p]!;
        if (c === '\\') {
          if (p + 1 >= v.length) return -8;
          if (v[p + 1] === q || v[p + 1] === '\\') p++;
        } else if (c === q) {
          closed = true;
          break;
        }
        value += v[p];
        p++;
      }
      if (!closed) return -10;
      p++;
    } else {
      const start2 = p;
      while (p < v.length && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(v[p]!)) p++;
      value = v.slice(start2, p);
    }
    if (value.includes("'")) f.invalidQuoting = true;
    if (key === 'name') {
      if (out.name !== undefined) return -14;
      out.name = value;
    } else if (key === 'filename') {
      if (out.filename !== undefined) return -15;
      out.filename = value;
    } else return -11;
    if (p < v.length) {
      ws();
      if (p >= v.length) return out;
      if (v[p] !== ';') {
        if (v[p - 1] === "'" || v[p - 1] === '"') f.invalidQuoting = true;
        return -12;
      }
      p++;
    }
  }
  return out;
}

/**
 * Parses a multipart/form-data body line by line as ModSecurity 2.9's parser does, so the same bodies are
 * errors (REQBODY_ERROR: the returned message) and the same oddities raise the same flags (MULTIPART_*).
 * `complete`: the whole body is here (a body cut at `maxBodyBytes` lacks its end, which is not an error).
 */
function parseMultipart(
  raw: string,
  boundary: string,
  body: ParsedBody,
  f: MultipartFlags,
  complete: boolean,
): string | undefined {
  const delim = `--${boundary}`;
  interface Part {
    /** By lowercased name. */
    headers: Map<string, string>;
    lines: string[];
    lastHeader: string | undefined;
    inData: boolean;
    name: string | undefined;
    filename: string | undefined;
    data: string;
  }
  let part: Part | undefined;
  let done = false;
  let boundaries = 0;
  /** Ends the part being read (at a boundary): a part whose headers never ended is skipped (invalid part). */
  const finish = (): void => {
    if (part === undefined) return;
    const p = part;
    part = undefined;
    if (!p.inData || p.name === undefined) {
      f.invalidPart = true;
      return;
    }
    // The line break before a boundary belongs to the boundary.
    const content = p.data.endsWith('\r\n')
      ? p.data.slice(0, -2)
      : p.data.endsWith('\n')
        ? p.data.slice(0, -1)
        : p.data;
    for (const line of p.lines) body.partHeaders.push({ key: p.name, value: line });
    if (p.filename !== undefined) {
      body.files.push({ key: p.name, value: p.filename });
      body.fileSizes.push({ key: p.name, value: String(content.length) });
    } else body.args.push({ key: p.name, value: content });
  };
  const header = (line: string, p: Part): string | undefined => {
    if (line.includes('\0')) return 'multipart: NUL byte in part headers';
    if (line.length > 1 && line[line.length - 2] === '\r') f.crlfLine = true;
    else f.lfLine = true;
    if (line === '\r\n' || line === '\n') {
      const cd = p.headers.get('content-disposition');
      if (cd === undefined) return 'multipart: part without Content-Disposition';
      const r = contentDisposition(cd, f);
      if (typeof r === 'number') return `multipart: invalid Content-Disposition (${r})`;
      if (r.name === undefined) return 'multipart: Content-Disposition without a name';
      if (r.filename !== undefined && !cd.includes('filename='))
        return 'multipart: invalid Content-Disposition (filename)';
      p.name = r.name;
      p.filename = r.filename;
      p.inData = true;
      return undefined;
    }
    const text = line.replace(/\r?\n$/, '');
    if (/^\s/.test(line)) {
      f.headerFolding = true;
      if (p.lastHeader === undefined) return 'multipart: folded part header without a header';
      const lead = /^\s*/.exec(text)![0];
      if (/[^ \t]/.test(lead)) f.invalidHeaderFolding = true;
      const v = `${p.headers.get(p.lastHeader)} ${text.slice(lead.length)}`;
      if (v.length > 4096) return 'multipart: part header too long';
      p.headers.set(p.lastHeader, v);
      p.lines.push(text);
      return undefined;
    }
    const colon = text.indexOf(':');
    if (colon < 0) return 'multipart: part header without a colon';
    if (colon === 0) return 'multipart: part header without a name';
    // Part header names are case-insensitive (ModSecurity keeps them in an APR table).
    const name = text.slice(0, colon).toLowerCase();
    if (p.headers.has(name)) return `multipart: duplicate part header ${text.slice(0, colon)}`;
    p.headers.set(name, text.slice(colon + 1).replace(/^[ \t]+/, ''));
    p.lastHeader = name;
    p.lines.push(text);
    return undefined;
  };
  let pos = 0;
  while (pos < raw.length) {
    if (done) {
      f.dataAfter = true;
      break;
    }
    const nl = raw.indexOf('\n', pos);
    // Without its line break, the last bytes are not a line (ModSecurity keeps them for the end check).
    if (nl < 0) break;
    const line = raw.slice(pos, nl + 1);
    pos = nl + 1;
    if (line.length > 3 && line[0] === '-' && line[1] === '-') {
      if (line.startsWith(delim)) {
        let end = delim.length;
        let final = false;
        if (line[end] === '-' && line[end + 1] === '-') {
          final = true;
          end += 2;
        }
        const rest = line.slice(end);
        if (rest !== '\r\n' && rest !== '\n') {
          f.error = true;
          return 'multipart: invalid boundary line';
        }
        if (rest === '\n') f.lfLine = true;
        else f.crlfLine = true;
        finish();
        if (!final)
          part = {
            headers: new Map(),
            lines: [],
            lastHeader: undefined,
            inData: false,
            name: undefined,
            filename: undefined,
            data: '',
          };
        else done = true;
        boundaries++;
        continue;
      }
      if (f.boundaryQuoted && line[2] === '"' && line.startsWith(boundary, 3)) {
        f.error = true;
        return 'multipart: quoted boundary line';
      }
      let p = 2;
      while (/\s/.test(line[p] ?? '')) p++;
      if (p > 2 && line.startsWith(boundary, p)) {
        f.error = true;
        return 'multipart: whitespace before a boundary';
      }
      f.unmatchedBoundary = true;
    } else if (line.includes(delim)) f.unmatchedBoundary = true;
    if (part === undefined) f.dataBefore = true;
    else if (!part.inData) {
      if (line.length >= 4096) {
        f.error = true;
        return 'multipart: part header line too long';
      }
      const err = header(line, part);
      if (err !== undefined) {
        f.error = true;
        return err;
      }
    } else part.data += line;
  }
  if (done || raw.length === 0) return undefined;
  const tail = raw.slice(pos);
  if (!complete) {
    // Cut at the inspection limit: what arrived of the last part is inspected all the same.
    if (part?.inData === true) {
      part.data += tail;
      finish();
    }
    return undefined;
  }
  // The end: the closing boundary without its line break is still the end.
  if (boundaries > 0 && tail === `${delim}--`) {
    finish();
    return undefined;
  }
  return boundaries > 0 ? 'multipart: final boundary missing' : 'multipart: no boundary in the body';
}

/**
 * Parses a request body by its content type, as ModSecurity's body processors (URLENCODED, JSON, MULTIPART) do,
 * including their errors (REQBODY_ERROR) and multipart flags. An empty body is not parsed (no error); a body cut
 * at the inspection limit (`complete: false`) is parsed as far as it goes, and its missing end is no error.
 */
export function parseBody(buf: Buffer, contentType: string, complete = true): ParsedBody {
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
    multipart: undefined,
  };
  if (ct.startsWith('application/x-www-form-urlencoded')) {
    body.processor = 'URLENCODED';
    body.args.push(...parseUrlEncoded(raw));
  } else if (/^application\/([a-z0-9.+-]*\+)?json\b/.test(ct)) {
    body.processor = 'JSON';
    if (raw.length > 0) {
      try {
        flattenJson(JSON.parse(buf.toString('utf8')), 'json', body.args);
      } catch (err) {
        if (complete) body.error = `JSON: ${(err as Error).message}`;
      }
    }
  } else if (ct.startsWith('multipart/form-data')) {
    body.processor = 'MULTIPART';
    const f = noFlags();
    body.multipart = f;
    const b = multipartBoundary(contentType, f);
    if (b.startsWith('multipart: ')) {
      f.error = true;
      body.error = b;
    } else if (raw.length > 0) body.error = parseMultipart(raw, b, body, f, complete);
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
