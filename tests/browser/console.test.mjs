// The web console (mod_admin_web, issue 17 "Web console") in headless
// Chromium (Debian's chromium) against a real xmppd: an administrator logs
// in, creates an account, sees it online when a small XMPP client (raw
// direct TLS, RFC 6120 + XEP-0368, below) logs in with it, kicks it, sees
// stanza rates, reloads a module, changes the account's password, deletes
// it, and reads the audit log; screenshots of each page are kept as artefacts in
// $XMPPD_ARTEFACTS/browser, else tests/browser/artefacts/.
//
//   XMPPD_BUILD=/path/to/build node --test tests/browser/
//
// Needs: npm ci in tests/browser (puppeteer-core), /usr/bin/chromium (or
// CHROMIUM). Every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';
import { freePort, waitPort } from './harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const BUILD = path.resolve(process.env.XMPPD_BUILD || path.join(REPO, 'build'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTEFACTS = process.env.XMPPD_ARTEFACTS
  ? path.join(process.env.XMPPD_ARTEFACTS, 'browser') : path.join(HERE, 'artefacts');
const WAIT = 20000;
const ADMIN = { jid: 'admin@localhost', password: 'admin-pw-' + Date.now() };
const CAROL = { user: 'carol', password: 'carol-pw-' + Date.now(), resource: 'console-test' };

let work, xmppd, browser, page, ports, base;
const problems = []; // page errors and console errors: none expected

// ---- a small XMPP client: direct TLS, SASL PLAIN, bind, presence -------------------------

class XmppClient {
  constructor(port) {
    this.buf = '';
    this.closed = false;
    this.waiters = [];
    this.sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false });
    this.sock.setEncoding('utf8');
    this.sock.on('data', (d) => { this.buf += d; this.poke(); });
    this.sock.on('close', () => { this.closed = true; this.poke(); });
    this.sock.on('error', () => {});
  }

  poke() { for (const w of this.waiters.slice()) w(); }

  // Resolves with the regexp's match in what arrived (then drops it), or
  // rejects after ms.
  waitFor(re, ms = WAIT) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.buf.match(re);
        if (m) {
          this.buf = this.buf.slice(m.index + m[0].length);
        } else if (!this.closed) {
          return;
        }
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        if (m) resolve(m); else reject(new Error(`closed before ${re}; got ${this.buf.slice(0, 300)}`));
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`no ${re} within ${ms} ms; got ${this.buf.slice(0, 300)}`));
      }, ms);
      this.waiters.push(check);
      check();
    });
  }

  waitClosed(ms = WAIT) {
    return new Promise((resolve, reject) => {
      if (this.closed) return resolve();
      const timer = setTimeout(() => reject(new Error('the server did not close the stream')), ms);
      this.sock.on('close', () => { clearTimeout(timer); resolve(); });
    });
  }

  send(s) { this.sock.write(s); }

  openStream() {
    this.send("<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xml:lang='en' "
      + "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
    return this.waitFor(/<\/stream:features>/);
  }

  async login(user, password, resource) {
    await new Promise((r, j) => { this.sock.once('secureConnect', r); this.sock.once('error', j); });
    await this.openStream();
    const plain = Buffer.from(`\0${user}\0${password}`).toString('base64');
    this.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain}</auth>`);
    await this.waitFor(/<success[\s>/]/);
    await this.openStream();
    this.send(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>`
      + `<resource>${resource}</resource></bind></iq>`);
    const m = await this.waitFor(/<jid>([^<]+)<\/jid>/);
    this.send('<presence/>');
    return m[1];
  }
}

// ---- the server and the browser -----------------------------------------------------------

before(async () => {
  assert.ok(existsSync(path.join(BUILD, 'server', 'xmppd')), `no xmppd in ${BUILD} (set XMPPD_BUILD)`);
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}`);
  mkdirSync(ARTEFACTS, { recursive: true });
  work = mkdtempSync(path.join(os.tmpdir(), 'xmppd-console-'));
  execFileSync('bash', [path.join(REPO, 'contrib', 'gen-cert.sh'), work, 'localhost'], { stdio: 'ignore' });
  ports = { c2s: await freePort(), https: await freePort() };
  const cfg = {
    log: { level: 'debug', file: path.join(work, 'xmppd.log') },
    data_dir: work, module_path: [path.join(BUILD, 'modules')],
    tls: { cert: path.join(work, 'localhost.crt'), key: path.join(work, 'localhost.key') },
    admins: [ADMIN.jid],
    listeners: [
      { type: 'c2s', address: '127.0.0.1', port: ports.c2s, tls: 'direct' },
      { type: 'http', address: '127.0.0.1', port: ports.https, tls: 'direct' },
    ],
    // admin_web without root: loaded from the build tree, it serves the source tree's files
    modules: {
      storage_sqlite: {}, auth_internal: { iterations: 4096 }, roster: {}, presence: {},
      disco: {}, ping: {}, metrics: {}, admin_api: {}, admin_web: {},
    },
    hosts: { localhost: {} },
  };
  const conf = path.join(work, 'xmppd.json');
  writeFileSync(conf, JSON.stringify(cfg, null, 2));
  execFileSync(path.join(BUILD, 'server', 'xmppctl'), ['-c', conf, 'adduser', ADMIN.jid], { input: ADMIN.password + '\n' });
  xmppd = spawn(path.join(BUILD, 'server', 'xmppd'), ['-c', conf], { stdio: ['ignore', 'inherit', 'inherit'] });
  await waitPort(ports.https, 15000);
  base = `https://localhost:${ports.https}/admin/`;
  browser = await puppeteer.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--ignore-certificate-errors', '--disable-dev-shm-usage', '--disable-gpu'],
  });
  page = await (await browser.createBrowserContext()).newPage();
  await page.setViewport({ width: 1280, height: 900 });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // A failed API call (403, 404) is logged by Chromium as a resource error; the page shows it.
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
    if (process.env.DEBUG_BROWSER) console.log(`[console] ${m.text().slice(0, 300)}`);
  });
  // Content-Security-Policy violations, counted by the page itself.
  await page.evaluateOnNewDocument(() => {
    window.cspViolations = [];
    document.addEventListener('securitypolicyviolation',
      (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
});

after(async () => {
  if (browser) await browser.close();
  if (xmppd) {
    xmppd.kill('SIGTERM');
    await new Promise((r) => { xmppd.on('exit', r); setTimeout(r, 10000); });
  }
});

async function shot(name) {
  await page.screenshot({ path: path.join(ARTEFACTS, `console-${name}.png`), fullPage: true });
}

function waitText(selector, re) {
  return page.waitForFunction((s, src) => {
    const e = document.querySelector(s);
    return e && new RegExp(src).test(e.textContent);
  }, { timeout: WAIT }, selector, re.source);
}

async function go(hash) {
  await page.evaluate((h) => { location.hash = h; }, hash);
}

// The session list is read when the page opens and on Refresh: refresh
// until jid is listed (or gone).
function sessionListed(jid, listed) {
  return page.waitForFunction(async (j, want) => {
    if (Boolean(document.querySelector(`#sess-table tr[data-jid="${j}"]`)) === want) return true;
    document.getElementById('sess-refresh').click();
    await new Promise((r) => setTimeout(r, 300));
    return false;
  }, { timeout: WAIT, polling: 500 }, jid, listed);
}

let client;

test('the console page comes with its security headers and logs an administrator in', async () => {
  const res = await page.goto(base, { waitUntil: 'domcontentloaded' });
  assert.equal(res.status(), 200);
  const h = res.headers();
  assert.match(h['content-security-policy'], /script-src 'self'/);
  assert.doesNotMatch(h['content-security-policy'], /unsafe-inline/);
  assert.equal(h['x-frame-options'], 'DENY');
  await page.waitForSelector('body[data-ready="yes"]', { timeout: WAIT });
  await shot('1-login');
  await page.type('#login-jid', ADMIN.jid);
  await page.type('#login-password', 'wrong password');
  await page.click('#login-submit');
  await waitText('#notice', /Login failed: wrong credentials/);
  assert.equal(await page.$eval('#login-password', (e) => e.value), '', 'the password field is cleared');
  await page.type('#login-password', ADMIN.password);
  await page.click('#login-submit');
  await page.waitForSelector('#nav:not([hidden])', { timeout: WAIT });
  await waitText('#whoami', /^admin@localhost$/);
  // The tab keeps a token, never the password; there are no cookies.
  const stored = await page.evaluate(() => sessionStorage.getItem('xmppd-console'));
  assert.match(JSON.parse(stored).token, /^[0-9a-f]{64}$/);
  assert.ok(!stored.includes(ADMIN.password));
  assert.deepEqual(await page.cookies(), []);
});

test('the dashboard shows sessions, stanza counters and the modules', async () => {
  await waitText('#dash-sessions', /^\d+$/);
  await page.waitForFunction(() => [...document.querySelectorAll('#dash-modules tbody tr td:first-child')]
    .some((td) => td.textContent === 'admin_web'), { timeout: WAIT });
  await waitText('#dash-s2s tbody', /no server-to-server streams/);
  await shot('2-dashboard');
});

test('an account created in the console logs in from an XMPP client and shows as online', async () => {
  await go('accounts');
  await page.waitForSelector('#accounts:not([hidden])', { timeout: WAIT });
  await page.type('#acc-new-user', CAROL.user);
  await page.type('#acc-new-password', CAROL.password);
  await page.click('#acc-create-submit');
  await waitText('#notice', /Created carol@localhost/);
  await page.waitForSelector('#acc-table tr[data-user="carol"]', { timeout: WAIT });
  await page.type('#acc-search', 'car');
  await waitText('#acc-count', /^1 of 2$/);
  await shot('3-accounts');

  client = new XmppClient(ports.c2s);
  const jid = await client.login(CAROL.user, CAROL.password, CAROL.resource);
  assert.equal(jid, `carol@localhost/${CAROL.resource}`);
  await go('sessions');
  await sessionListed(jid, true);
  await shot('4-sessions');
});

test('kicking the session ends the client\'s stream with <policy-violation/> (RFC 6120 §4.9.3.14)', async () => {
  const jid = `carol@localhost/${CAROL.resource}`;
  const stanzaError = client.waitFor(/<stream:error>[\s\S]*?policy-violation[\s\S]*?<\/stream:error>/);
  await page.click(`#sess-table tr[data-jid="${jid}"] button[data-action="kick"]`);
  await waitText('#notice', /Kicked carol@localhost/);
  await stanzaError;
  await client.waitClosed();
  await sessionListed(jid, false);
  await shot('5-kicked');
});

test('the dashboard shows the stanza rates of a client\'s traffic, and reloads a module', async () => {
  // carol again, sending herself five messages a second while the dashboard reads the
  // counters (rates need two readings, 5 s apart).
  const busy = new XmppClient(ports.c2s);
  const jid = await busy.login(CAROL.user, CAROL.password, 'busy');
  const timer = setInterval(() => busy.send(`<message to='${jid}' type='chat'><body>tick</body></message>`), 200);
  try {
    await go('dashboard');
    await page.waitForFunction(() => parseFloat(document.getElementById('dash-rate-in').textContent) > 0,
      { timeout: WAIT });
    const rows = await page.$$eval('#dash-stanzas tbody tr', (trs) => trs.map((tr) =>
      [...tr.children].map((td) => td.textContent)));
    const inMsg = rows.find((r) => r.slice(0, 3).join(' ') === 'c2s in message');
    assert.ok(inMsg && Number(inMsg[3]) > 0 && parseFloat(inMsg[4]) > 0, JSON.stringify(rows));
    await waitText('#dash-sessions', /^1$/);
  } finally {
    clearInterval(timer);
    busy.sock.destroy();
  }
  await page.evaluate(() => {
    const row = [...document.querySelectorAll('#dash-modules tbody tr')]
      .find((tr) => tr.children[0].textContent === 'ping');
    row.querySelector('button').click();
  });
  await waitText('#notice', /module ping reloaded on localhost/);
  await shot('6-dashboard-after');
});

test('an account\'s password is changed and the account deleted from the accounts page', async () => {
  await go('accounts');
  await page.waitForSelector('#acc-table tr[data-user="carol"]', { timeout: WAIT });
  const row = '#acc-table tr[data-user="carol"]';
  const newPw = CAROL.password + '-new';
  await page.type(`${row} input[type="password"]`, newPw);
  await page.click(`${row} button[data-action="passwd"]`);
  await waitText('#notice', /Password of carol@localhost changed/);
  const c = new XmppClient(ports.c2s);
  assert.equal(await c.login(CAROL.user, newPw, 'new-password'), 'carol@localhost/new-password');
  c.sock.destroy();
  await page.click(`${row} button[data-action="delete"]`); // asks first
  await waitText(`${row} button[data-action="delete"]`, /Really delete\?/);
  await page.click(`${row} button[data-action="delete"]`);
  await waitText('#notice', /Deleted carol@localhost/);
  await page.waitForFunction((r) => !document.querySelector(r), { timeout: WAIT }, row);
  await waitText('#acc-count', /^0 of 1$/);
  await shot('7-deleted');
});

test('the audit log lists the calls, and logging out ends the token', async () => {
  await go('audit');
  await page.waitForFunction(() => [...document.querySelectorAll('#audit-table tbody tr')]
    .some((tr) => /kick_session/.test(tr.textContent) && /admin@localhost/.test(tr.textContent)),
  { timeout: WAIT });
  const rows = await page.$$eval('#audit-table tbody tr', (trs) => trs.map((tr) => tr.textContent));
  assert.ok(rows.some((r) => /register.*admin@localhost.*200/.test(r)), rows.join('\n'));
  assert.ok(rows.some((r) => /login.*admin@localhost.*401/.test(r)), 'the failed login is there');
  for (const cmd of ['module_reload', 'change_password', 'unregister'])
    assert.ok(rows.some((r) => new RegExp(`${cmd}.*admin@localhost.*200`).test(r)), `${cmd}: ${rows.join('\n')}`);
  await shot('8-audit');
  const token = await page.evaluate(() => JSON.parse(sessionStorage.getItem('xmppd-console')).token);
  await page.click('#logout');
  await page.waitForSelector('#login-page:not([hidden])', { timeout: WAIT });
  assert.equal(await page.evaluate(() => sessionStorage.getItem('xmppd-console')), null);
  const st = await page.evaluate(async (t) => (await fetch('../api/status', {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${t}` }, body: '{}',
  })).status, token);
  assert.equal(st, 401);
});

test('no Content-Security-Policy violation and no script error on any page', async () => {
  assert.deepEqual(await page.evaluate(() => window.cspViolations), []);
  assert.deepEqual(problems, []);
});
