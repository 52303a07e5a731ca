// Node.js with its whole thread set busy at once (run by node_mix.sh natively and under the
// shim; both must print the same lines): an HTTP server and 200 concurrent fetches of 256 KiB
// bodies on the main loop, fs.promises, crypto.pbkdf2 and dns.lookup on libuv's thread pool,
// and V8's platform workers collecting the garbage. stdout holds only deterministic lines;
// timings go to stderr. A hang ends the process itself after 45 s (node_mix.sh's timeout is
// the outer bound).
'use strict';
const crypto = require('node:crypto');
const dns = require('node:dns');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { promisify } = require('node:util');

const FETCHES = 200;
const BODY_BYTES = 256 * 1024;
const FILES = 8;
const FILE_BYTES = 1024 * 1024;
const PBKDF2_RUNS = 4;
const PBKDF2_ITERATIONS = 300000;

const started = process.hrtime.bigint();
const elapsedMs = () => Number(process.hrtime.bigint() - started) / 1e6;
const pending = new Set(['fetches', 'files', 'pbkdf2', 'dns']);
const note = (what) => {
  pending.delete(what);
  process.stderr.write(`node_mix: ${what} done at ${elapsedMs().toFixed(0)} ms\n`);
};

const giveUp = setTimeout(() => {
  const parts = [...pending].join(', ');
  process.stderr.write(`node_mix: still waiting for ${parts} after 45 s, giving up\n`);
  process.exit(2);
}, 45000);

// The body for index i: the same bytes in every run, different for every index.
function bodyFor(i) {
  const body = Buffer.alloc(BODY_BYTES);
  let x = (i + 1) * 2654435761 >>> 0;
  for (let k = 0; k < BODY_BYTES; k += 4) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    body.writeUInt32LE(x, k);
  }
  return body;
}

const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');

function startServer() {
  const server = http.createServer((request, response) => {
    const i = Number(request.url.slice(1));
    const body = bodyFor(i);
    response.writeHead(200, { 'content-type': 'application/octet-stream',
      'content-length': body.length });
    response.end(body);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// 200 fetches at once; each body is checked against the bytes it should be.
async function fetchAll(port) {
  let intact = 0;
  const digests = await Promise.all(Array.from({ length: FETCHES }, async (_, i) => {
    const response = await fetch(`http://127.0.0.1:${port}/${i}`);
    const body = Buffer.from(await response.arrayBuffer());
    const digest = sha256(body);
    if (response.status === 200 && body.length === BODY_BYTES && digest === sha256(bodyFor(i))) {
      intact++;
    }
    return digest;
  }));
  note('fetches');
  return `fetch: ${intact} of ${FETCHES} bodies of ${BODY_BYTES} bytes intact, ` +
    `sha256 of all ${sha256(digests.join(''))}`;
}

// Several files written and read back at once, each through the thread pool.
async function filesRoundTrip() {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'node_mix-'));
  try {
    const same = await Promise.all(Array.from({ length: FILES }, async (_, i) => {
      const data = Buffer.alloc(FILE_BYTES, i + 1);
      const file = path.join(dir, `f${i}`);
      await fs.promises.writeFile(file, data);
      return (await fs.promises.readFile(file)).equals(data);
    }));
    note('files');
    const good = same.filter(Boolean).length;
    return `fs: ${good} of ${FILES} files of ${FILE_BYTES} bytes read back the same`;
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}

// CPU-bound work on the thread pool: a few derivations at once, one key printed.
async function derive() {
  const pbkdf2 = promisify(crypto.pbkdf2);
  const keys = await Promise.all(Array.from({ length: PBKDF2_RUNS }, (_, i) =>
    pbkdf2('libgreen', `salt${i}`, PBKDF2_ITERATIONS, 32, 'sha256')));
  note('pbkdf2');
  return `pbkdf2: ${PBKDF2_RUNS} keys, salt0 gives ${keys[0].toString('hex')}`;
}

async function lookup() {
  const { family } = await dns.promises.lookup('localhost');
  note('dns');
  return `dns: localhost is IPv${family}`;
}

async function main() {
  const server = await startServer();
  const { port } = server.address();
  const lines = await Promise.all([fetchAll(port), filesRoundTrip(), derive(), lookup()]);
  await new Promise((resolve) => server.close(resolve));
  clearTimeout(giveUp);
  for (const line of lines) console.log(line);
  process.stderr.write(`node_mix: all done at ${elapsedMs().toFixed(0)} ms\n`);
}

main().catch((error) => {
  console.log(`failed: ${error.stack}`);
  process.exit(1);
});
