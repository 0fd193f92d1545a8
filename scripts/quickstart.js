// `npm start`: the demo service on 127.0.0.1:3000 and the gateway with examples/quickstart.yaml
// (traffic on 127.0.0.1:8080, admin on 127.0.0.1:9901). Ctrl-C stops both.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const children = [];
const run = (args) => {
  const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit' });
  children.push(child);
  child.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`quickstart: ${args[0]} exited (${signal ?? code}); stopping\n`);
      stop(code ?? 1);
    }
  });
  return child;
};

let stopping = false;
function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  for (const c of children) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 3000).unref();
  Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r() : c.on('exit', r))))).then(
    () => process.exit(code),
  );
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

run(['examples/demo-service.js', '3000']);
run(['bin/trellis.js', 'gateway', '--config', 'examples/quickstart.yaml', ...process.argv.slice(2)]);
process.stderr.write(
  '\nTrellis quickstart: gateway on http://127.0.0.1:8080, admin on http://127.0.0.1:9901\n' +
    '  curl -i http://127.0.0.1:8080/api/hello\n  curl -i http://127.0.0.1:9901/ready\n\n',
);
