/**
 * Just enough of RFC 6455 framing for a proxy that relays bytes: where frames begin and end, which frames are
 * close frames, how big a message is on the wire, and how to write a close frame of its own. Payloads are
 * never read, unmasked, decompressed or copied: a relayed chunk goes on as a slice of itself.
 */
import { randomFillSync } from 'node:crypto';

/** RFC 6455 §7.4.1 status codes Trellis sends. */
export const CloseCode = {
  goingAway: 1001,
  messageTooBig: 1009,
} as const;

/** The largest frame length a JavaScript number holds exactly (2^53 - 1): longer ones are refused. */
const MAX_SAFE_HIGH = 0x1f_ffff;

/**
 * A close frame (RFC 6455 §5.5.1): unmasked toward a client, masked with a fresh key toward a server (§5.3).
 * `reason` is ASCII of at most 123 bytes.
 */
export function closeFrame(code: number, reason: string, masked: boolean): Buffer {
  const text = Buffer.from(reason.slice(0, 123), 'latin1');
  const length = 2 + text.length;
  const offset = masked ? 6 : 2;
  const out = Buffer.allocUnsafe(offset + length);
  out[0] = 0x88; // FIN + opcode 8 (close)
  out[1] = (masked ? 0x80 : 0) | length;
  out.writeUInt16BE(code, offset);
  text.copy(out, offset + 2);
  if (masked) {
    randomFillSync(out, 2, 4);
    for (let i = 0; i < length; i++) out[offset + i] = out[offset + i]! ^ out[2 + (i & 3)]!;
  }
  return out;
}

/** Bytes the header has in all, from its second byte (RFC 6455 §5.2). */
function headerSize(second: number): number {
  const len7 = second & 0x7f;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + ((second & 0x80) !== 0 ? 4 : 0);
}

/**
 * Follows the frames of one direction of a WebSocket while its bytes are relayed. `feed` hands each chunk
 * to `sink` (as slices of it) except the bytes of a frame header that is not complete yet: those are held back
 * until it is, so that the peer downstream is always at a frame boundary before the next header arrives. That
 * lets the gateway stop a direction at a boundary (`halt`) and put a close frame of its own there, and refuse
 * a frame over the message size limit before any byte of it went on.
 *
 * A halted scanner forwards nothing more but keeps following the frames, so that it sees the close frame with
 * which the peer answers the gateway's.
 */
export class FrameScanner {
  /** Largest message (the payloads of a data frame and its continuations); Infinity: no limit. */
  limit: number;
  /** A close frame came from this direction's source (forwarded or not). */
  closeSeen = false;
  /** Nothing more is forwarded. */
  halted = false;
  /** Called for each close frame header from the source. */
  onClose: (() => void) | undefined = undefined;
  /** Called (once, after the bytes before it went on) when a frame would make a message exceed `limit`. */
  onTooBig: ((size: number) => void) | undefined = undefined;

  readonly #header = Buffer.allocUnsafe(14);
  /** Header bytes collected so far (0: between frames or in a payload). */
  #headerLength = 0;
  /** Header bytes needed: 2 until the second byte tells the full size. */
  #headerNeed = 2;
  /** Payload bytes of the current frame still to come. */
  #remaining = 0;
  /** Wire bytes of the current data message so far. */
  #message = 0;
  /** Runs at the next frame boundary, then the scanner is halted. */
  #onHalt: (() => void) | undefined = undefined;

  constructor(limit = Number.POSITIVE_INFINITY) {
    this.limit = limit;
  }

  /**
   * Stops forwarding at the next frame boundary (now, if the downstream peer is at one) and then runs `cb`,
   * where the caller writes its own frame. On a scanner already halted `cb` runs at once.
   */
  halt(cb: () => void): void {
    if (this.halted) cb();
    else if (this.#remaining === 0) {
      this.halted = true;
      cb();
    } else this.#onHalt = cb;
  }

  feed(chunk: Buffer, sink: (bytes: Buffer) => void): void {
    const n = chunk.length;
    /** Header bytes that arrived in earlier chunks and were held back. */
    let held = this.#headerLength;
    /** First byte of this chunk not yet forwarded. */
    let start = 0;
    let i = 0;
    while (i < n) {
      const remaining = this.#remaining;
      if (remaining > 0) {
        const take = Math.min(remaining, n - i);
        this.#remaining = remaining - take;
        i += take;
        continue;
      }
      if (this.#onHalt !== undefined) {
        // A boundary, and a halt is waiting for one.
        if (!this.halted && i > start) sink(chunk.subarray(start, i));
        start = n;
        this.#halt();
      }
      const header = this.#header;
      while (this.#headerLength < this.#headerNeed && i < n) {
        header[this.#headerLength++] = chunk[i++]!;
        if (this.#headerLength === 2) this.#headerNeed = headerSize(header[1]!);
      }
      if (this.#headerLength < this.#headerNeed) break;
      // A complete header: where it began in this chunk, and whether it may go on.
      const frameStart = i - (this.#headerLength - held);
      const opcode = header[0]! & 0x0f;
      const len7 = header[1]! & 0x7f;
      let length = len7;
      if (len7 === 126) length = header.readUInt16BE(2);
      else if (len7 === 127) {
        const high = header.readUInt32BE(2);
        length =
          high > MAX_SAFE_HIGH ? Number.POSITIVE_INFINITY : high * 0x1_0000_0000 + header.readUInt32BE(6);
      }
      this.#headerLength = 0;
      this.#headerNeed = 2;
      this.#remaining = length;
      let tooBig = length === Number.POSITIVE_INFINITY;
      if (opcode >= 8) {
        if (opcode === 8) this.closeSeen = true;
      } else {
        // 0 continues a fragmented message; 1 (text) and 2 (binary) begin one.
        this.#message = opcode === 0 ? this.#message + length : length;
        if (this.#message > this.limit) tooBig = true;
      }
      if (tooBig && !this.halted) {
        // Nothing of this frame goes on (its held header bytes are dropped); its payload is skipped.
        if (frameStart > start) sink(chunk.subarray(start, frameStart));
        start = n;
        this.halted = true;
        this.#onHalt = undefined;
        this.onTooBig?.(this.#message);
      } else if (held > 0 && !this.halted) {
        // The header began in an earlier chunk: its held bytes go first (copied: the buffer is reused).
        sink(Buffer.from(header.subarray(0, held)));
      }
      held = 0;
      if (opcode === 8) this.onClose?.();
    }
    if (!this.halted) {
      // Bytes of a header still incomplete at the end of the chunk are held back.
      const end = n - (this.#headerLength - held);
      if (end > start) sink(chunk.subarray(start, end));
    }
    if (this.#onHalt !== undefined && this.#remaining === 0) this.#halt();
  }

  #halt(): void {
    const cb = this.#onHalt!;
    this.#onHalt = undefined;
    this.halted = true;
    cb();
  }
}
