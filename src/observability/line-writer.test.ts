import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { LineWriter } from './line-writer.js';

const dir = mkdtempSync(join(tmpdir(), 'trellis-lines-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const options = { batchBytes: 1024, flushMs: 50, maxPending: 2, onError: () => {} };

describe('LineWriter', () => {
  test('every line arrives whole and in order, the last partial batch on close', async () => {
    const path = join(dir, 'order.log');
    // One synchronous burst of 5000 lines (~400 KB): enough queue for all of it.
    const w = await LineWriter.open({ ...options, dest: path, maxPending: 1000 });
    for (let i = 0; i < 5000; i++) w.write(`{"n":${i},"text":"ü€ ${'x'.repeat(i % 97)}"}\n`);
    await w.close();
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(5000);
    expect(lines.map((l) => JSON.parse(l).n)).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    expect(w.dropped).toBe(0);
  });

  test('appends to what the file holds', async () => {
    const path = join(dir, 'append.log');
    for (const run of [1, 2]) {
      const w = await LineWriter.open({ ...options, dest: path });
      w.write(`run ${run}\n`);
      await w.close();
    }
    expect(readFileSync(path, 'utf8')).toBe('run 1\nrun 2\n');
  });

  test('a quiet writer still writes within flushMs', async () => {
    const path = join(dir, 'quiet.log');
    const w = await LineWriter.open({ ...options, dest: path });
    w.write('one line\n');
    await new Promise((r) => setTimeout(r, 300));
    expect(readFileSync(path, 'utf8')).toBe('one line\n');
    await w.close();
  });

  test('a destination that stops reading costs dropped lines, never memory or a blocked caller', async () => {
    const fifo = join(dir, 'stuck.fifo');
    execFileSync('mkfifo', [fifo]);
    // A reader that never reads: once the pipe's buffer is full, every write waits.
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const w = await LineWriter.open({ ...options, dest: fifo });
    const started = performance.now();
    const line = `${'y'.repeat(199)}\n`;
    for (let i = 0; i < 20_000; i++) {
      w.write(line);
      if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
    }
    expect(performance.now() - started).toBeLessThan(2_000);
    // 4 MB offered; the pipe holds 64 KiB, the writer a batch in flight and two pending.
    expect(w.dropped).toBeGreaterThan(15_000);
    const closing = performance.now();
    await w.close(300);
    expect(performance.now() - closing).toBeLessThan(1_500);
    closeSync(reader);
  });

  test('a failed write is reported once; later lines are dropped', async () => {
    const path = join(dir, 'readonly.log');
    closeSync(openSync(path, 'w'));
    const fd = openSync(path, 'r');
    const errors: Error[] = [];
    const w = await LineWriter.open({ ...options, dest: fd, onError: (e) => errors.push(e) });
    for (let i = 0; i < 100; i++) w.write(`${'z'.repeat(99)}\n`);
    await new Promise((r) => setTimeout(r, 200));
    w.write('after\n');
    expect(errors).toHaveLength(1);
    expect((errors[0] as NodeJS.ErrnoException).code).toBe('EBADF');
    expect(w.dropped).toBe(101);
    await w.close();
    closeSync(fd);
  });

  test('a path that cannot be opened is an error naming it', async () => {
    await expect(LineWriter.open({ ...options, dest: join(dir, 'no/such/dir.log') })).rejects.toThrow(
      /access log .*no\/such\/dir\.log: ENOENT/,
    );
  });
});
