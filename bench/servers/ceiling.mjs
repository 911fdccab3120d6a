// The architecture's ceiling behind nginx: a plain node:http server that answers every check 202 with
// the headers gatehouse sends for the bench's session and `Content-Length: 0` (so nginx keeps its upstream
// connection alive), and decides nothing.
// Usage: node bench/servers/ceiling.mjs <port> '<JSON object of response headers>'
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
const headers = { ...JSON.parse(process.argv[3] ?? '{}'), 'content-length': '0' };
const server = createServer((req, res) => {
  if (req.url === '/ping') {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': '2' });
    res.end('OK');
    return;
  }
  res.writeHead(202, headers);
  res.end();
});
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
