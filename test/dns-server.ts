import { createSocket, type RemoteInfo } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';

/**
 * A minimal authoritative DNS server over UDP on 127.0.0.1 for tests (RFC 1035 wire format). It answers
 * A, AAAA and SRV questions from an in-memory table, NXDOMAIN for names it does not know at all and an empty
 * NOERROR answer for a known name without records of the asked type. Names are matched case-insensitively,
 * without a trailing dot. No recursion, no EDNS, no TCP, no compression beyond pointing answers at the question.
 */

export interface DnsAddressRecord {
  address: string;
  ttl: number;
}

export interface DnsSrvRecord {
  priority: number;
  weight: number;
  port: number;
  target: string;
  ttl: number;
}

export interface DnsRecords {
  A?: Record<string, DnsAddressRecord[]>;
  AAAA?: Record<string, DnsAddressRecord[]>;
  SRV?: Record<string, DnsSrvRecord[]>;
}

export interface DnsServer {
  readonly port: number;
  /** Queries received so far (answered or not). */
  readonly queries: number;
  setRecords(records: DnsRecords): void;
  /**
   * While silent, queries are counted but never answered (a resolver then times out): all of them (true), or
   * only those for the listed record types.
   */
  setSilent(silent: boolean | ReadonlyArray<'A' | 'AAAA' | 'SRV'>): void;
  close(): Promise<void>;
}

const TYPE_A = 1;
const TYPE_AAAA = 28;
const TYPE_SRV = 33;
const TYPE_CODES = { A: TYPE_A, AAAA: TYPE_AAAA, SRV: TYPE_SRV } as const;
const CLASS_IN = 1;
const RCODE_FORMERR = 1;
const RCODE_NXDOMAIN = 3;
const RCODE_NOTIMP = 4;

export async function startDnsServer(initial: DnsRecords): Promise<DnsServer> {
  let table = normalize(initial);
  let queries = 0;
  let silent: boolean | ReadonlyArray<'A' | 'AAAA' | 'SRV'> = false;
  const socket = createSocket('udp4');

  socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
    queries++;
    if (silent === true) return;
    if (silent !== false) {
      const type = parseQuestion(msg)?.type;
      if (silent.some((t) => TYPE_CODES[t] === type)) return;
    }
    const reply = answer(msg, table);
    if (reply) socket.send(reply, rinfo.port, rinfo.address);
  });

  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      socket.off('error', reject);
      resolve();
    });
  });
  // A late error (e.g. ICMP noise) must not crash the test process.
  socket.on('error', () => {});
  const port = socket.address().port;

  return {
    port,
    get queries() {
      return queries;
    },
    setRecords(records) {
      table = normalize(records);
    },
    setSilent(s) {
      silent = s;
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

function normalizeName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function normalize(records: DnsRecords): Required<DnsRecords> {
  const lower = <T>(m: Record<string, T[]> | undefined): Record<string, T[]> => {
    const out: Record<string, T[]> = {};
    for (const [k, v] of Object.entries(m ?? {})) out[normalizeName(k)] = v;
    return out;
  };
  return { A: lower(records.A), AAAA: lower(records.AAAA), SRV: lower(records.SRV) };
}

interface Question {
  name: string;
  type: number;
  klass: number;
  /** Offset just past the question section. */
  end: number;
}

/** Reads the first question; undefined when the packet is malformed. */
function parseQuestion(msg: Buffer): Question | undefined {
  if (msg.length < 12) return undefined;
  let off = 12;
  const labels: string[] = [];
  for (;;) {
    if (off >= msg.length) return undefined;
    const len = msg[off]!;
    off++;
    if (len === 0) break;
    // Questions are never compressed in practice; a pointer or an extended label type is rejected.
    if (len > 63 || off + len > msg.length) return undefined;
    labels.push(msg.toString('latin1', off, off + len));
    off += len;
  }
  if (off + 4 > msg.length) return undefined;
  return {
    name: normalizeName(labels.join('.')),
    type: msg.readUInt16BE(off),
    klass: msg.readUInt16BE(off + 2),
    end: off + 4,
  };
}

function answer(msg: Buffer, table: Required<DnsRecords>): Buffer | undefined {
  if (msg.length < 12) return undefined;
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000) return undefined; // a response, not a query
  const opcode = (flags >> 11) & 0xf;
  const rd = flags & 0x0100;
  const qdcount = msg.readUInt16BE(4);

  const q = qdcount === 1 && opcode === 0 ? parseQuestion(msg) : undefined;
  const header = (rcode: number, ancount: number, withQuestion: boolean): Buffer => {
    const h = Buffer.alloc(12);
    h.writeUInt16BE(id, 0);
    // QR=1, opcode echoed, AA=1, RD echoed, RA=0.
    h.writeUInt16BE(0x8000 | (opcode << 11) | 0x0400 | rd | rcode, 2);
    h.writeUInt16BE(withQuestion ? 1 : 0, 4);
    h.writeUInt16BE(ancount, 6);
    return h;
  };
  if (opcode !== 0) return header(RCODE_NOTIMP, 0, false);
  if (!q) return header(RCODE_FORMERR, 0, false);
  const question = msg.subarray(12, q.end);

  const known = q.name in table.A || q.name in table.AAAA || q.name in table.SRV;
  if (!known || q.klass !== CLASS_IN) return Buffer.concat([header(RCODE_NXDOMAIN, 0, true), question]);

  const rrs: Buffer[] = [];
  if (q.type === TYPE_A) {
    for (const r of table.A[q.name] ?? []) rrs.push(rr(TYPE_A, r.ttl, ipv4Bytes(r.address)));
  } else if (q.type === TYPE_AAAA) {
    for (const r of table.AAAA[q.name] ?? []) rrs.push(rr(TYPE_AAAA, r.ttl, ipv6Bytes(r.address)));
  } else if (q.type === TYPE_SRV) {
    for (const r of table.SRV[q.name] ?? []) {
      const fixed = Buffer.alloc(6);
      fixed.writeUInt16BE(r.priority, 0);
      fixed.writeUInt16BE(r.weight, 2);
      fixed.writeUInt16BE(r.port, 4);
      rrs.push(rr(TYPE_SRV, r.ttl, Buffer.concat([fixed, encodeName(r.target)])));
    }
  }
  return Buffer.concat([header(0, rrs.length, true), question, ...rrs]);
}

/** One answer record whose owner name is a compression pointer to the question name at offset 12. */
function rr(type: number, ttl: number, rdata: Buffer): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(0xc00c, 0);
  b.writeUInt16BE(type, 2);
  b.writeUInt16BE(CLASS_IN, 4);
  b.writeUInt32BE(ttl >>> 0, 6);
  b.writeUInt16BE(rdata.length, 10);
  return Buffer.concat([b, rdata]);
}

function encodeName(name: string): Buffer {
  const parts: Buffer[] = [];
  for (const label of normalizeName(name).split('.')) {
    if (label === '') continue;
    const bytes = Buffer.from(label, 'latin1');
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

function ipv4Bytes(address: string): Buffer {
  if (!isIPv4(address)) throw new Error(`not an IPv4 address: ${address}`);
  return Buffer.from(address.split('.').map(Number));
}

function ipv6Bytes(address: string): Buffer {
  if (!isIPv6(address)) throw new Error(`not an IPv6 address: ${address}`);
  let text = address;
  // A trailing dotted IPv4 part (::ffff:1.2.3.4) becomes two hex groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted[1]!.split('.').map(Number) as [number, number, number, number];
    text = text.slice(0, dotted.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16);
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const fill = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(fill).fill('0'), ...tailGroups];
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  return out;
}
