// A small WebSocket upstream for examples/websocket-bridge.yaml, on the `ws` package: it answers JSON requests
// `{ id, method, path, params, query, body }` with `{ id, status, result }` (the `id` echoed, so the gateway can
// match the reply), and broadcasts a price tick `{ type: "tick", symbol, price }` every 500 ms to connections
// that sent `{ "subscribe": "prices" }`.
// Usage: node examples/ws-rpc-service.js [port]   (default 3002, loopback only)
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2] ?? process.env.WS_RPC_PORT ?? 3002);
const wss = new WebSocketServer({ host: '127.0.0.1', port });
const subscribed = new Set();
const stock = new Map([['widgets', 12]]);

function handle(req) {
  const item = req.params?.item;
  switch (`${req.method} ${item === undefined ? 'list' : 'item'}`) {
    case 'GET list':
      return { status: 200, result: Object.fromEntries(stock) };
    case 'GET item':
      return stock.has(item)
        ? { status: 200, result: { item, count: stock.get(item) } }
        : { status: 404, result: { error: `no item ${item}` } };
    case 'PUT item': {
      const count = Number(req.body?.count);
      if (!Number.isInteger(count)) return { status: 400, result: { error: 'count must be an integer' } };
      stock.set(item, count);
      return { status: 200, result: { item, count } };
    }
    default:
      return { status: 405, result: { error: `${req.method} not supported` } };
  }
}

wss.on('connection', (ws, req) => {
  process.stderr.write(`ws-rpc: connection on ${req.url}\n`);
  ws.on('close', () => subscribed.delete(ws));
  ws.on('message', (data) => {
    let msg;
    try {
      msg = JSON.parse(String(data));
    } catch {
      return;
    }
    if (msg.subscribe === 'prices') {
      subscribed.add(ws);
      return;
    }
    ws.send(JSON.stringify({ id: msg.id, ...handle(msg) }));
  });
});

const prices = { ACME: 100, INIT: 42 };
setInterval(() => {
  for (const symbol of Object.keys(prices)) {
    prices[symbol] = Math.round((prices[symbol] + (Math.random() - 0.5) * 2) * 100) / 100;
    const tick = JSON.stringify({ type: 'tick', symbol, price: prices[symbol] });
    for (const ws of subscribed) ws.send(tick);
  }
}, 500).unref();

wss.on('listening', () => process.stderr.write(`ws-rpc: ws://127.0.0.1:${port}\n`));
