// Converse.js (npm) in headless Chromium (Debian's chromium) against a real
// xmppd: alice logs in over WebSocket (RFC 7395), bob over BOSH (XEP-0206);
// they exchange messages through Converse's own chat box, and alice uploads a
// picture (XEP-0363) that bob's browser downloads and shows.
//
//   XMPPD_BUILD=/path/to/build node --test tests/browser/
//
// Needs: npm install in tests/browser (converse.js, puppeteer-core), and
// /usr/bin/chromium (or CHROMIUM). Every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';
import { freePort, waitPort } from './harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const BUILD = path.resolve(process.env.XMPPD_BUILD || path.join(REPO, 'build'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const DIST = path.join(HERE, 'node_modules', 'converse.js', 'dist');
const WAIT = 20000;

let work, xmppd, web, browser, ports;
const users = { alice: 'alice-pw-' + Date.now(), bob: 'bob-pw-' + Date.now() };

// The page: Converse with a tiny plugin handing its API to the test.
function page(name, conn) {
  return `<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/dist/converse.min.css">
<script type="module" src="/dist/converse.min.js"></script></head><body>
<script type="module">
converse.plugins.add('xmppd-test', { initialize() { window.api = this._converse.api; } });
converse.initialize({
  ${conn},
  assets_path: '/dist/', jid: '${name}@localhost', password: '${users[name]}',
  auto_login: true, view_mode: 'fullscreen', whitelisted_plugins: ['xmppd-test'],
  discover_connection_methods: false, allow_non_roster_messaging: true,
  show_images_inline: true, play_sounds: false, show_desktop_notifications: false,
  loglevel: '${process.env.DEBUG_BROWSER ? 'debug' : 'info'}', theme: 'concord', persistent_store: 'sessionStorage'
});
</script></body></html>`;
}

before(async () => {
  assert.ok(existsSync(path.join(BUILD, 'server', 'xmppd')), `no xmppd in ${BUILD} (set XMPPD_BUILD)`);
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}`);
  work = mkdtempSync(path.join(os.tmpdir(), 'xmppd-browser-'));
  execFileSync('bash', [path.join(REPO, 'contrib', 'gen-cert.sh'), work, 'localhost'], { stdio: 'ignore' });
  ports = { c2s: await freePort(), https: await freePort(), web: await freePort() };
  const cfg = {
    log: { level: 'debug', file: path.join(work, 'xmppd.log') },
    data_dir: work, module_path: [path.join(BUILD, 'modules')],
    tls: { cert: path.join(work, 'localhost.crt'), key: path.join(work, 'localhost.key') },
    listeners: [
      { type: 'c2s', address: '127.0.0.1', port: ports.c2s },
      { type: 'http', address: '127.0.0.1', port: ports.https, tls: 'direct' },
    ],
    modules: {
      storage_sqlite: {}, auth_internal: { iterations: 4096 }, roster: {}, presence: {},
      disco: {}, caps: {}, vcard: {}, private: {}, ping: {}, offline: {}, smacks: {},
      privacy: {}, blocking: {}, pep: {}, bookmarks: {},
      upload: { max_file_size: '1M' },
    },
    hosts: { localhost: {} },
  };
  const conf = path.join(work, 'xmppd.json');
  writeFileSync(conf, JSON.stringify(cfg, null, 2));
  for (const [u, pw] of Object.entries(users))
    execFileSync(path.join(BUILD, 'server', 'xmppctl'), ['-c', conf, 'adduser', `${u}@localhost`], { input: pw + '\n' });
  xmppd = spawn(path.join(BUILD, 'server', 'xmppd'), ['-c', conf], { stdio: ['ignore', 'inherit', 'inherit'] });
  await waitPort(ports.c2s, 15000);

  const pages = {
    '/alice.html': page('alice', `websocket_url: 'wss://localhost:${ports.https}/xmpp-websocket'`),
    '/bob.html': page('bob', `bosh_service_url: 'https://localhost:${ports.https}/http-bind'`),
  };
  web = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (pages[url.pathname]) {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      return res.end(pages[url.pathname]);
    }
    const file = path.join(DIST, path.normalize(url.pathname.replace(/^\/dist\//, '')));
    if (url.pathname.startsWith('/dist/') && file.startsWith(DIST) && existsSync(file)) {
      const type = file.endsWith('.js') ? 'text/javascript' : file.endsWith('.css') ? 'text/css'
        : file.endsWith('.json') ? 'application/json' : file.endsWith('.wasm') ? 'application/wasm'
        : 'application/octet-stream';
      res.writeHead(200, { 'Content-Type': type });
      return res.end(readFileSync(file));
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise((r) => web.listen(ports.web, '127.0.0.1', r));
  browser = await puppeteer.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--ignore-certificate-errors', '--disable-dev-shm-usage', '--disable-gpu'],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (web) web.close();
  if (xmppd) {
    xmppd.kill('SIGTERM');
    await new Promise((r) => { xmppd.on('exit', r); setTimeout(r, 10000); });
  }
});

async function login(name) {
  const ctx = await browser.createBrowserContext();
  const p = await ctx.newPage();
  p.on('pageerror', (e) => console.log(`[${name} page error] ${e.message}`));
  if (process.env.DEBUG_BROWSER)
    p.on('console', (m) => console.log(`[${name}] ${m.text().slice(0, 300)}`));
  await p.goto(`http://localhost:${ports.web}/${name}.html`);
  await p.waitForFunction(() => window.api && window.api.connection.connected()
    && window.api.connection.get()?.authenticated, { timeout: WAIT });
  return p;
}

async function openChat(p, jid) {
  // Not awaited inside the page: the promise settles with Converse's own timing.
  await p.evaluate((j) => { window.api.chats.open(j, {}, true); }, jid);
  await p.waitForSelector(`converse-chat[jid="${jid}"] textarea.chat-textarea`, { timeout: WAIT });
}

async function say(p, jid, text) {
  const box = `converse-chat[jid="${jid}"] textarea.chat-textarea`;
  await p.type(box, text);
  await p.keyboard.press('Enter');
}

function waitText(p, jid, text) {
  return p.waitForFunction((j, t) => [...document.querySelectorAll(`converse-chat[jid="${j}"] .chat-msg__text`)]
    .some((e) => e.textContent.includes(t)), { timeout: WAIT }, jid, text);
}

let alice, bob;

test('alice logs in over WebSocket and bob over BOSH (RFC 7395, XEP-0206)', async () => {
  [alice, bob] = await Promise.all([login('alice'), login('bob')]);
  const kinds = await Promise.all([alice, bob].map((p) =>
    p.evaluate(() => window.api.connection.get().service)));
  assert.match(kinds[0], /^wss:\/\/.*\/xmpp-websocket$/);
  assert.match(kinds[1], /^https:\/\/.*\/http-bind$/);
});

test('a message from alice (WebSocket) reaches bob (BOSH) and back', async () => {
  await openChat(alice, 'bob@localhost');
  await say(alice, 'bob@localhost', 'hello bob, over websocket');
  await openChat(bob, 'alice@localhost');
  await waitText(bob, 'alice@localhost', 'hello bob, over websocket');
  await say(bob, 'alice@localhost', 'hello alice, over bosh');
  await waitText(alice, 'bob@localhost', 'hello alice, over bosh');
});

test('alice uploads a picture (XEP-0363) that bob downloads and shows', async () => {
  const png = path.join(work, 'picture.png');
  // A 2x2 red PNG.
  writeFileSync(png, Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFElEQVR4nGP8z8DAwMDAxMDAwAAAHgQCAe9ftdMAAAAASUVORK5CYII=', 'base64'));
  const input = await alice.waitForSelector('converse-chat[jid="bob@localhost"] input.fileupload', { timeout: WAIT });
  await input.uploadFile(png);
  const loaded = await bob.waitForFunction(() => {
    const img = [...document.querySelectorAll('converse-chat[jid="alice@localhost"] img')]
      .find((i) => i.src.includes('/upload/') && i.src.endsWith('picture.png'));
    return img && img.complete && img.naturalWidth === 2 ? img.src : null;
  }, { timeout: WAIT });
  assert.match(await loaded.jsonValue(), /^https:\/\/upload\.localhost:\d+\/upload\/[0-9a-f-]+\/picture\.png$/);
});
