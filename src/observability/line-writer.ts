import { close, open, write } from 'node:fs';

/**
 * Batched, asynchronous line output for the access log: lines are encoded straight into a reusable buffer, and a
 * full batch (`batchBytes`, or whatever is there after `flushMs`) goes out in one `write` on libuv's thread pool,
 * so that a slow disk or a full pipe never stalls a request.
 *
 * Why not pino's destination (sonic-boom), which this replaced: it concatenates lines into a string and hands the
 * string to `fs.write`, which flattens and encodes it again; measured at 3.5–4.5 µs of CPU per line against 0.9–2
 * µs here, the difference being a few percent of a proxied request's whole cost (docs/benchmarks.md, issue 5).
 *
 * Bounded: at most `maxPending` full batches wait behind the one being written; past that, lines are dropped and
 * counted (`dropped`) rather than held in memory. Writes are sequential, so lines keep their order, and each batch
 * holds whole lines (with `O_APPEND`, several workers writing one file never split each other's lines).
 */
export interface LineWriterOptions {
  /** A path (opened for appending, created if missing) or a file descriptor (1 for stdout). */
  readonly dest: string | number;
  readonly batchBytes: number;
  readonly flushMs: number;
  readonly maxPending: number;
  /** A write failed (disk full, closed pipe): told once; lines are dropped from then on. */
  readonly onError: (err: Error) => void;
}

/** The longest line kept: a longer one is dropped whole rather than split. */
const MAX_LINE_BYTES = 64 * 1024;

export class LineWriter {
  readonly #fd: number;
  readonly #ownsFd: boolean;
  readonly #batchBytes: number;
  readonly #maxPending: number;
  readonly #onError: (err: Error) => void;
  readonly #timer: NodeJS.Timeout;
  #buf: Buffer;
  #used = 0;
  /** Full batches waiting for the write in flight. */
  #pending: Buffer[] = [];
  #writing = false;
  #broken = false;
  #closed = false;
  #idle: (() => void) | undefined = undefined;
  #dropped = 0;

  private constructor(fd: number, ownsFd: boolean, o: LineWriterOptions) {
    this.#fd = fd;
    this.#ownsFd = ownsFd;
    this.#batchBytes = o.batchBytes;
    this.#maxPending = o.maxPending;
    this.#onError = o.onError;
    // Room for a batch plus the longest line, so that a line never straddles two buffers.
    this.#buf = Buffer.allocUnsafe(o.batchBytes + MAX_LINE_BYTES);
    this.#timer = setInterval(() => this.flush(), o.flushMs);
    this.#timer.unref();
  }

  /** Opens the destination; rejects (naming it) when it cannot be opened, so a bad path fails the reload. */
  static async open(o: LineWriterOptions): Promise<LineWriter> {
    const dest = o.dest;
    if (typeof dest === 'number') return new LineWriter(dest, false, o);
    const fd = await new Promise<number>((resolve, reject) =>
      open(dest, 'a', 0o640, (err, fd) =>
        err ? reject(new Error(`access log ${dest}: ${err.message}`)) : resolve(fd),
      ),
    );
    return new LineWriter(fd, true, o);
  }

  /** Lines lost: the queue was full, a write failed, or the writer was closed. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Appends one line (the caller adds the newline). Never throws, never blocks. */
  write(line: string): void {
    if (this.#broken || this.#closed) {
      this.#dropped++;
      return;
    }
    // A UTF-16 unit encodes to at most 3 bytes: anything shorter than a third of the room surely fits.
    if (line.length * 3 > MAX_LINE_BYTES && Buffer.byteLength(line) > MAX_LINE_BYTES) {
      this.#dropped++;
      return;
    }
    this.#used += this.#buf.write(line, this.#used);
    if (this.#used >= this.#batchBytes) this.flush();
  }

  /** Hands what is buffered to the writer now. */
  flush(): void {
    if (this.#used === 0) return;
    const batch = this.#buf.subarray(0, this.#used);
    this.#buf = Buffer.allocUnsafe(this.#buf.length);
    this.#used = 0;
    if (this.#writing) {
      if (this.#pending.length >= this.#maxPending) {
        this.#dropped += countLines(batch);
        return;
      }
      this.#pending.push(batch);
      return;
    }
    this.#send(batch, 0);
  }

  #send(batch: Buffer, offset: number): void {
    this.#writing = true;
    write(this.#fd, batch, offset, batch.length - offset, null, (err, n) => {
      if (err) {
        const again = (err as NodeJS.ErrnoException).code === 'EAGAIN';
        if (again && !this.#closed) {
          // A non-blocking pipe that is full: try again shortly.
          setTimeout(() => this.#send(batch, offset), 10).unref();
          return;
        }
        this.#fail(err, batch);
        return;
      }
      if (offset + n < batch.length) {
        this.#send(batch, offset + n);
        return;
      }
      const next = this.#pending.shift();
      if (next !== undefined) {
        this.#send(next, 0);
        return;
      }
      this.#writing = false;
      const idle = this.#idle;
      if (idle !== undefined) {
        this.#idle = undefined;
        idle();
      }
    });
  }

  #fail(err: Error, batch: Buffer): void {
    this.#dropped += countLines(batch);
    for (const b of this.#pending) this.#dropped += countLines(b);
    this.#pending = [];
    this.#writing = false;
    if (!this.#broken) {
      this.#broken = true;
      // After close, a failure is the closing's own doing (its deadline passed): nothing to report.
      if (!this.#closed) this.#onError(err);
    }
    this.#idle?.();
    this.#idle = undefined;
  }

  /**
   * Writes what is buffered and queued, then closes a file it opened. Bounded by `timeoutMs`, so that a stuck
   * pipe never holds a shutdown; lines still queued then are counted as dropped.
   */
  close(timeoutMs = 2_000): Promise<void> {
    if (this.#closed) return Promise.resolve();
    clearInterval(this.#timer);
    this.flush();
    this.#closed = true;
    return new Promise<void>((resolve) => {
      let finished = false;
      const done = () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        for (const b of this.#pending) this.#dropped += countLines(b);
        this.#pending = [];
        if (this.#ownsFd) close(this.#fd, () => resolve());
        else resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      if (this.#writing) this.#idle = done;
      else done();
    });
  }
}

function countLines(b: Buffer): number {
  let n = 0;
  for (let i = b.indexOf(10); i !== -1; i = b.indexOf(10, i + 1)) n++;
  return n;
}
