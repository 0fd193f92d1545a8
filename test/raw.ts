import { connect } from 'node:net';

/** Sends raw bytes to host:port and collects everything until the server closes or `ms` pass. */
export function rawRequest(port: number, data: string | Buffer, ms = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    }, ms);
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', (err) => {
      clearTimeout(timer);
      if (chunks.length) resolve(Buffer.concat(chunks).toString('latin1'));
      else reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    socket.write(data);
  });
}

/** Status code of the first response in a raw reply. */
export function statusOf(raw: string): number {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(raw);
  return m ? Number(m[1]) : 0;
}
