import { describe, expect, test } from 'vitest';
import { closeFrame, FrameScanner } from './ws-frames.js';

/** One RFC 6455 frame, masked (client to server) or not, with the 7-bit, 16-bit or 64-bit length form. */
function frame(opcode: number, payload: Buffer, o: { fin?: boolean; masked?: boolean } = {}): Buffer {
  const fin = o.fin ?? true;
  const masked = o.masked ?? false;
  const n = payload.length;
  const len =
    n < 126
      ? [n]
      : n < 65_536
        ? [126, n >> 8, n & 0xff]
        : [127, 0, 0, 0, 0, 0, n >> 16, (n >> 8) & 0xff, n & 0xff];
  const head = Buffer.from([(fin ? 0x80 : 0) | opcode, (masked ? 0x80 : 0) | len[0]!, ...len.slice(1)]);
  if (!masked) return Buffer.concat([head, payload]);
  const key = Buffer.from([1, 2, 3, 4]);
  const body = Buffer.from(payload.map((b, i) => b ^ key[i & 3]!));
  return Buffer.concat([head, key, body]);
}

/** Feeds `input` cut at `cuts` and returns what went on. */
function run(scanner: FrameScanner, input: Buffer, cuts: number[]): Buffer {
  const out: Buffer[] = [];
  let from = 0;
  for (const to of [...cuts, input.length]) {
    scanner.feed(input.subarray(from, to), (b) => out.push(Buffer.from(b)));
    from = to;
  }
  return Buffer.concat(out);
}

const frames = [
  frame(1, Buffer.from('hello')),
  frame(2, Buffer.alloc(300, 7), { masked: true }),
  frame(9, Buffer.alloc(0)),
  frame(2, Buffer.alloc(70_000, 1)),
  frame(1, Buffer.from('part one '), { fin: false, masked: true }),
  frame(10, Buffer.from('pong'), { masked: true }),
  frame(0, Buffer.from('part two'), { masked: true }),
];
const stream = Buffer.concat(frames);

describe('FrameScanner', () => {
  test('forwards every byte, in order, however the stream is cut', () => {
    // Every cut position once, then cut into single bytes around the headers.
    for (let at = 0; at <= stream.length; at += 97) {
      expect(run(new FrameScanner(), stream, [at]).equals(stream)).toBe(true);
    }
    const bytes = Array.from({ length: 400 }, (_, i) => i + 1);
    expect(run(new FrameScanner(), stream, bytes).equals(stream)).toBe(true);
  });

  test('holds back a header until it is complete', () => {
    const f = frame(2, Buffer.alloc(200, 3), { masked: true }); // 2 + 2 + 4 header bytes
    const s = new FrameScanner();
    const out: Buffer[] = [];
    s.feed(f.subarray(0, 5), (b) => out.push(Buffer.from(b)));
    expect(out).toEqual([]);
    s.feed(f.subarray(5), (b) => out.push(Buffer.from(b)));
    expect(Buffer.concat(out).equals(f)).toBe(true);
  });

  test('halt waits for the end of the frame in progress', () => {
    const a = frame(2, Buffer.alloc(1000, 1));
    const b = frame(1, Buffer.from('next'));
    const s = new FrameScanner();
    const out: Buffer[] = [];
    const sink = (x: Buffer) => out.push(Buffer.from(x));
    s.feed(a.subarray(0, 500), sink);
    let halted = 0;
    s.halt(() => halted++);
    expect(halted).toBe(0);
    s.feed(Buffer.concat([a.subarray(500), b]), sink);
    expect(halted).toBe(1);
    expect(Buffer.concat(out).equals(a)).toBe(true);
    // Halted: the peer's close frame is still seen, never forwarded.
    let closes = 0;
    s.onClose = () => closes++;
    s.feed(frame(8, Buffer.from([0x03, 0xe9]), { masked: true }), sink);
    expect(closes).toBe(1);
    expect(s.closeSeen).toBe(true);
    expect(Buffer.concat(out).equals(a)).toBe(true);
  });

  test('halt at a boundary (a partial header held back counts as one) runs at once', () => {
    const s = new FrameScanner();
    const f = frame(1, Buffer.from('abc'));
    s.feed(f.subarray(0, 1), () => {});
    let halted = false;
    s.halt(() => {
      halted = true;
    });
    expect(halted).toBe(true);
  });

  test('a message over the limit stops before its first byte, fragments added up', () => {
    const first = frame(1, Buffer.alloc(60, 97), { fin: false, masked: true });
    const ping = frame(9, Buffer.alloc(10), { masked: true });
    const second = frame(0, Buffer.alloc(60, 98), { masked: true });
    const input = Buffer.concat([first, ping, second, frame(1, Buffer.from('after'))]);
    for (const cut of [first.length + ping.length + 1, first.length + ping.length + 3, 7]) {
      const s = new FrameScanner(100);
      let size = 0;
      s.onTooBig = (n) => {
        size = n;
      };
      const out = run(s, input, [cut]);
      expect(size).toBe(120);
      expect(out.equals(Buffer.concat([first, ping]))).toBe(true);
      expect(s.halted).toBe(true);
    }
  });

  test('a new message resets the count', () => {
    const s = new FrameScanner(100);
    let tooBig = false;
    s.onTooBig = () => {
      tooBig = true;
    };
    const input = Buffer.concat([frame(2, Buffer.alloc(90)), frame(2, Buffer.alloc(90))]);
    expect(run(s, input, []).equals(input)).toBe(true);
    expect(tooBig).toBe(false);
  });
});

describe('closeFrame', () => {
  test('unmasked toward a client', () => {
    const f = closeFrame(1001, 'going away', false);
    expect(f[0]).toBe(0x88);
    expect(f[1]).toBe(12);
    expect(f.readUInt16BE(2)).toBe(1001);
    expect(f.subarray(4).toString()).toBe('going away');
  });

  test('masked toward a server', () => {
    const f = closeFrame(1009, 'too big', true);
    expect(f[0]).toBe(0x88);
    expect(f[1]).toBe(0x80 | 9);
    const key = f.subarray(2, 6);
    const payload = Buffer.from(f.subarray(6).map((b, i) => b ^ key[i & 3]!));
    expect(payload.readUInt16BE(0)).toBe(1009);
    expect(payload.subarray(2).toString()).toBe('too big');
  });
});
