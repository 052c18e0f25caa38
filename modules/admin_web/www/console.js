// xmppd web console: plain JavaScript, no framework, no build step.
//
// Everything goes through mod_admin_api's JSON commands (POST API/COMMAND
// with a JSON body). Logging in trades the administrator's JID and
// password (checked by the server's own auth) for a short-lived token;
// the token is kept in sessionStorage (this tab only, gone when it
// closes) and sent as "Authorization: Bearer", never in a cookie, so a
// page of another site cannot make the browser call the API. The
// password is not kept. Data from the server is put into the page as
// text (textContent), never as HTML.
'use strict';

const KEY = 'xmppd-console';
const POLL_MS = 5000;
const $ = (id) => document.getElementById(id);

let apiBase = null;   // URL of the API's commands, from config.json
let login = null;     // { token, jid, server_wide, hosts }
let pollTimer = null;
let lastStanzas = null; // { at, byKey: { 'c2s in message': total } }

// ---- the API ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(command, args = {}, auth = true) {
  const headers = { 'Content-Type': 'application/json' };
  if (auth) headers.Authorization = 'Bearer ' + login.token;
  let res;
  try {
    res = await fetch(apiBase + '/' + command, {
      method: 'POST', headers, body: JSON.stringify(args), credentials: 'omit', cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'the server cannot be reached');
  }
  let body = null;
  try { body = await res.json(); } catch (e) { /* not JSON: the status says it */ }
  if (res.ok) return body;
  const msg = body && body.message ? body.message : `HTTP ${res.status}`;
  if (res.status === 401 && auth) {
    endLogin('Your login ended (it expired, or the server or its API restarted): log in again.');
  }
  throw new ApiError(res.status, msg);
}

// ---- small DOM helpers -------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'data') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function fillTable(id, rows, emptyText, columns) {
  const tbody = $(id).querySelector('tbody');
  tbody.replaceChildren();
  if (!rows.length) {
    tbody.append(el('tr', {}, el('td', { class: 'empty', colSpan: columns }, emptyText)));
    return;
  }
  for (const r of rows) tbody.append(r);
}

function notice(text, isError = false) {
  const n = $('notice');
  n.textContent = text;
  n.className = isError ? 'error' : '';
  n.hidden = !text;
}

function failed(what) {
  return (e) => notice(`${what}: ${e.message}`, true);
}

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

// ---- login -------------------------------------------------------------------------------

function showLoggedIn() {
  $('login-page').hidden = true;
  $('nav').hidden = false;
  $('whoami').textContent = login.jid;
  const sel = $('acc-host');
  sel.replaceChildren(...login.hosts.map((h) => el('option', { value: h }, h)));
  route();
}

function endLogin(why) {
  login = null;
  sessionStorage.removeItem(KEY);
  clearInterval(pollTimer);
  pollTimer = null;
  for (const p of document.querySelectorAll('.page')) p.hidden = true;
  $('nav').hidden = true;
  $('login-page').hidden = false;
  notice(why || '', Boolean(why));
}

async function onLogin(ev) {
  ev.preventDefault();
  const jid = $('login-jid').value.trim();
  const pw = $('login-password');
  $('login-submit').disabled = true;
  try {
    const r = await api('login', { jid, password: pw.value }, false);
    login = { token: r.token, jid: r.jid, server_wide: r.server_wide, hosts: r.hosts };
    sessionStorage.setItem(KEY, JSON.stringify(login));
    notice('');
    showLoggedIn();
  } catch (e) {
    notice(`Login failed: ${e.message}`, true);
  } finally {
    pw.value = '';
    $('login-submit').disabled = false;
  }
}

async function onLogout() {
  try { await api('logout'); } catch (e) { /* ended anyway */ }
  endLogin('');
  location.hash = '';
}

// ---- pages -------------------------------------------------------------------------------

const pages = { dashboard: showDashboard, accounts: showAccounts, sessions: showSessions, audit: showAudit };

function route() {
  if (!login) return;
  const name = pages[location.hash.slice(1)] ? location.hash.slice(1) : 'dashboard';
  for (const p of document.querySelectorAll('.page')) p.hidden = p.id !== name;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('current', a.dataset.page === name);
  clearInterval(pollTimer);
  pollTimer = null;
  pages[name]();
}

// Dashboard: status, stanza rates (from two readings of the metrics), s2s streams, modules.
async function showDashboard() {
  await refreshDashboard();
  if (!pollTimer && !$('dashboard').hidden) pollTimer = setInterval(refreshDashboard, POLL_MS);
}

async function refreshDashboard() {
  if (!login.server_wide) {
    notice('The dashboard shows server-wide data: only server-wide administrators see it.', true);
    return;
  }
  try {
    const [status, stanzas, s2s, modules] = await Promise.all([
      api('status'), api('metrics', { name: 'xmppd_stanzas_total' }), api('s2s_connections'), api('modules'),
    ]);
    $('dash-sessions').textContent = status.sessions;
    $('dash-uptime').textContent = duration(status.uptime);
    $('dash-version').textContent = `xmppd ${status.version}, pid ${status.pid}, configuration ${status.config}`;
    fillTable('dash-hosts', status.hosts.map((h) => el('tr', {}, el('td', {}, h.host),
      el('td', {}, h.sessions), el('td', {}, h.modules))), 'no hosts', 3);
    showStanzas(stanzas);
    $('dash-s2s-count').textContent = s2s.length;
    fillTable('dash-s2s', s2s.map((s) => el('tr', {}, el('td', {}, s.direction), el('td', {}, s.local || '–'),
      el('td', {}, s.remote || '–'), el('td', {}, `${s.ip}:${s.port}`), el('td', {}, s.state),
      el('td', {}, s.secure ? 'yes' : 'no'))), 'no server-to-server streams', 6);
    fillTable('dash-modules', modules.modules.map((m) => el('tr', {},
      el('td', {}, m.module), el('td', {}, m.host || '(global)'), el('td', {}, m.version || ''),
      el('td', {}, m.summary || ''),
      el('td', {}, el('button', { type: 'button', class: 'small', onclick: () => reloadModule(m) }, 'Reload')))),
    'no modules', 5);
  } catch (e) {
    if (login) failed('Dashboard')(e);
  }
}

function showStanzas(samples) {
  const now = Date.now();
  const byKey = {};
  const rows = [];
  let rateIn = 0, rateOut = 0;
  const dt = lastStanzas ? (now - lastStanzas.at) / 1000 : 0;
  for (const s of samples) {
    const l = s.labels;
    const key = `${l.transport} ${l.direction} ${l.kind}`;
    byKey[key] = s.value;
    const before = lastStanzas && lastStanzas.byKey[key];
    const rate = dt > 0 && before !== undefined ? Math.max(0, (s.value - before) / dt) : null;
    if (rate !== null) {
      if (l.direction === 'in') rateIn += rate; else rateOut += rate;
    }
    rows.push(el('tr', {}, el('td', {}, l.transport), el('td', {}, l.direction), el('td', {}, l.kind),
      el('td', {}, s.value), el('td', {}, rate === null ? '…' : rate.toFixed(2))));
  }
  lastStanzas = { at: now, byKey };
  $('dash-rate-in').textContent = dt > 0 ? rateIn.toFixed(2) : '…';
  $('dash-rate-out').textContent = dt > 0 ? rateOut.toFixed(2) : '…';
  fillTable('dash-stanzas', rows, 'no stanzas yet', 5);
}

async function reloadModule(m) {
  const args = { module: m.module };
  if (m.host) args.host = m.host;
  try {
    const r = await api('module_reload', args);
    notice(r.message || `${m.module} reloaded`);
  } catch (e) {
    // Reloading mod_admin_api itself ends every login: the 401 handler took us to the login page.
    if (login) failed(`Reload of ${m.module}`)(e);
    return;
  }
  refreshDashboard();
}

async function reloadConfig() {
  try {
    await api('reload_config');
    notice('The configuration was read again.');
  } catch (e) {
    if (login) failed('Reload of the configuration')(e);
  }
}

// Accounts of one host: search, create, delete, change password.
let accountList = [];

async function showAccounts() {
  const host = $('acc-host').value;
  if (!host) {
    fillTable('acc-table', [], 'you administer no host', 3);
    return;
  }
  try {
    accountList = await api('registered_users', { host });
    renderAccounts();
  } catch (e) {
    if (login) failed('Accounts')(e);
  }
}

function renderAccounts() {
  const host = $('acc-host').value;
  const q = $('acc-search').value.trim().toLowerCase();
  const shown = accountList.filter((u) => u.includes(q));
  $('acc-count').textContent = `${shown.length} of ${accountList.length}`;
  fillTable('acc-table', shown.map((u) => {
    const pw = el('input', { type: 'password', autocomplete: 'new-password', placeholder: 'new password',
      data: { user: u } });
    const setPw = el('button', { type: 'button', class: 'small', data: { action: 'passwd', user: u },
      onclick: () => changePassword(u, host, pw) }, 'Set password');
    const del = el('button', { type: 'button', class: 'small danger', data: { action: 'delete', user: u } }, 'Delete');
    del.addEventListener('click', () => deleteAccount(u, host, del));
    return el('tr', { data: { user: u } }, el('td', {}, `${u}@${host}`), el('td', {}, pw, ' ', setPw), el('td', {}, del));
  }), q ? 'no account matches' : 'no accounts', 3);
}

async function createAccount(ev) {
  ev.preventDefault();
  const host = $('acc-host').value;
  const user = $('acc-new-user').value.trim();
  const pw = $('acc-new-password');
  try {
    await api('register', { user, host, password: pw.value });
    notice(`Created ${user}@${host}.`);
    $('acc-new-user').value = '';
    showAccounts();
  } catch (e) {
    if (login) failed(`Creating ${user}@${host}`)(e);
  } finally {
    pw.value = '';
  }
}

async function changePassword(user, host, input) {
  if (!input.value) { notice('Type the new password first.', true); return; }
  try {
    const r = await api('change_password', { user, host, newpass: input.value });
    notice(`Password of ${user}@${host} changed; ${r.sessions_closed} session(s) ended.`);
  } catch (e) {
    if (login) failed(`Password of ${user}@${host}`)(e);
  } finally {
    input.value = '';
  }
}

// Deleting takes two clicks: the button asks first.
async function deleteAccount(user, host, button) {
  if (button.dataset.armed !== 'yes') {
    button.dataset.armed = 'yes';
    button.textContent = 'Really delete?';
    setTimeout(() => { button.dataset.armed = ''; button.textContent = 'Delete'; }, 5000);
    return;
  }
  try {
    const r = await api('unregister', { user, host });
    notice(`Deleted ${user}@${host}; ${r.sessions_closed} session(s) ended.`);
    showAccounts();
  } catch (e) {
    if (login) failed(`Deleting ${user}@${host}`)(e);
  }
}

// Online sessions, each with a kick button.
function splitJid(full) {
  const slash = full.indexOf('/');
  const bare = full.slice(0, slash);
  const at = bare.indexOf('@');
  return { user: bare.slice(0, at), host: bare.slice(at + 1), resource: full.slice(slash + 1) };
}

async function showSessions() {
  if (!login.server_wide) {
    notice('The session list is server-wide: only server-wide administrators see it.', true);
    return;
  }
  try {
    const list = await api('connected_users_info');
    fillTable('sess-table', list.map((s) => el('tr', { data: { jid: s.jid } },
      el('td', {}, s.jid), el('td', {}, s.ip), el('td', {}, s.secure ? 'yes' : 'no'),
      el('td', {}, s.available ? s.show || 'available' : 'unavailable'), el('td', {}, s.priority),
      el('td', {}, el('button', { type: 'button', class: 'small danger', data: { action: 'kick' },
        onclick: () => kick(s.jid) }, 'Kick')))), 'nobody is online', 6);
  } catch (e) {
    if (login) failed('Sessions')(e);
  }
}

async function kick(jid) {
  try {
    await api('kick_session', { ...splitJid(jid), reason: 'Ended by an administrator' });
    notice(`Kicked ${jid}.`);
  } catch (e) {
    if (login) failed(`Kicking ${jid}`)(e);
  }
  showSessions();
}

async function showAudit() {
  try {
    const list = await api('audit_log', { limit: '100' });
    fillTable('audit-table', list.map((a) => el('tr', {}, el('td', {}, a.time.replace('T', ' ').replace('Z', '')),
      el('td', {}, a.command), el('td', {}, a.caller), el('td', {}, a.ip), el('td', {}, a.status))),
    'no calls yet', 5);
  } catch (e) {
    if (login) failed('Audit log')(e);
  }
}

// ---- start -------------------------------------------------------------------------------

async function start() {
  $('login-form').addEventListener('submit', onLogin);
  $('logout').addEventListener('click', onLogout);
  $('reload-config').addEventListener('click', reloadConfig);
  $('acc-host').addEventListener('change', showAccounts);
  $('acc-search').addEventListener('input', renderAccounts);
  $('acc-create').addEventListener('submit', createAccount);
  $('sess-refresh').addEventListener('click', showSessions);
  $('audit-refresh').addEventListener('click', showAudit);
  window.addEventListener('hashchange', () => { notice(''); route(); });
  try {
    const cfg = await (await fetch('config.json', { cache: 'no-store' })).json();
    apiBase = new URL(cfg.api, location.href).href.replace(/\/$/, '');
  } catch (e) {
    notice('The console cannot find the admin API (config.json).', true);
    return;
  }
  try { login = JSON.parse(sessionStorage.getItem(KEY)); } catch (e) { login = null; }
  if (login && login.token) showLoggedIn();
  else endLogin('');
  document.body.dataset.ready = 'yes';
}

document.addEventListener('DOMContentLoaded', start);
