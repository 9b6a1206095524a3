// The ahvfs console: one page, hash routes, the JSON API under /api/v1/.
// Plain JavaScript, no build step and no framework: the page is small, and
// every name from the API goes into the page as text (textContent), never
// as markup.
'use strict';

const state = { me: null, timer: null };

// el builds an element: attrs are attributes, except class, text and
// on<event>; children are nodes, strings (as text) or arrays of them.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function render(...nodes) {
  const app = document.getElementById('app');
  app.replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
}

function toast(msg, error) {
  const t = document.getElementById('toast');
  t.textContent = msg;
  t.className = error ? 'error' : '';
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, error ? 8000 : 4000);
}

// api calls the API; state-changing calls carry the session's CSRF token.
async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  if (method !== 'GET' && state.me && state.me.csrf_token) opts.headers['X-CSRF-Token'] = state.me.csrf_token;
  const res = await fetch(path, opts);
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (res.status === 401 && path !== '/api/v1/login') {
    state.me = null;
    showLogin();
    throw new Error((data && data.error) || 'log in');
  }
  if (!res.ok) throw new Error((data && data.error) || res.status + ' ' + res.statusText);
  return data;
}

const can = (action) => !!state.me && state.me.actions.includes(action);
const seg = (s) => encodeURIComponent(s);
const pointAPI = (vm, at) => '/api/v1/vms/' + seg(vm) + '/points/' + seg(at);
const pathAPI = (parts) => parts.map(seg).join('/');

function bytes(n) {
  if (!n) return '0 B';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + u[i];
}

function when(t) {
  if (!t) return '—';
  return t.replace('T', ' ').replace(/(\.\d+)?Z$/, ' UTC');
}

function ago(t) {
  if (!t) return '';
  const s = (Date.now() - Date.parse(t)) / 1000;
  if (s < 90) return Math.max(0, Math.round(s)) + ' s ago';
  if (s < 5400) return Math.round(s / 60) + ' min ago';
  if (s < 129600) return Math.round(s / 3600) + ' h ago';
  return Math.round(s / 86400) + ' d ago';
}

function badge(result) {
  const cls = { ok: 'ok', failed: 'bad', partial: 'warn', cancelled: 'warn', running: 'warn', queued: 'muted' }[result] || 'muted';
  return el('span', { class: 'badge ' + cls, text: result || 'never' });
}

function heading(text, ...after) { return el('h1', {}, text, ...after); }

// ---- login

function showLogin() {
  stopPolling();
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('who').textContent = '';
  const user = el('input', { type: 'text', id: 'user', name: 'user', autocomplete: 'username', required: true });
  const pass = el('input', { type: 'password', id: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const msg = el('p', { class: 'bad', id: 'login-error' });
  // method and action: never a password in a URL, even if the script's
  // handler did not run.
  const form = el('form', { class: 'card', id: 'login', method: 'post', action: '/api/v1/login' },
    el('label', { for: 'user', text: 'User' }), user,
    el('label', { for: 'password', text: 'Password' }), pass,
    el('p', {}, el('button', { class: 'primary', type: 'submit', text: 'Log in' })), msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      state.me = await api('POST', '/api/v1/login', { user: user.value, password: pass.value });
      showUser();
      route();
    } catch (e) {
      msg.textContent = e.message;
    }
  });
  render(heading('Log in to ahvfs'), form);
  user.focus();
}

function showUser() {
  document.getElementById('nav').hidden = false;
  document.getElementById('logout').hidden = false;
  document.getElementById('nav-repo').hidden = state.me.scopes.length > 0;
  const scope = state.me.scopes.length ? ' · ' + state.me.scopes.join(', ') : '';
  document.getElementById('who').textContent = state.me.user + ' (' + state.me.role + scope + ')';
}

async function logout() {
  try { await api('POST', '/api/v1/logout'); } catch (e) { /* the session is gone either way */ }
  state.me = null;
  location.hash = '#/';
  showLogin();
}

// ---- polling: a page that shows something running reloads it

function poll(fn, ms) {
  stopPolling();
  state.timer = setTimeout(async () => {
    state.timer = null;
    try { await fn(); } catch (e) { toast(e.message, true); }
  }, ms);
}

function stopPolling() {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
}

// ---- actions

// queueJob asks for a job and shows its page; button (when given) stays
// disabled unless the request fails.
async function queueJob(path, body, what, button) {
  if (button) button.disabled = true;
  try {
    const r = await api('POST', path, body);
    if (what) toast(what + ' queued');
    location.hash = '#/job/' + seg(r.job);
  } catch (e) {
    toast(e.message, true);
    if (button) button.disabled = false;
  }
}

function backupNow(vm, button) {
  return queueJob('/api/v1/vms/' + seg(vm) + '/backup', {}, 'Backup of ' + vm, button);
}

// ---- dashboard

async function dashboard() {
  const data = await api('GET', '/api/v1/vms');
  const rows = data.vms.map((v) => el('tr', { 'data-vm': v.name },
    el('td', {}, el('a', { href: '#/vm/' + seg(v.name), text: v.name })),
    el('td', { text: v.policy }),
    el('td', {}, when(v.last_success), el('div', { class: 'muted', text: ago(v.last_success) })),
    el('td', {}, badge(v.last_result)),
    el('td', {}, el('span', { class: 'badge ' + (v.rpo_compliant ? 'ok' : 'bad'), text: v.rpo_compliant ? 'within RPO' : 'outside RPO' })),
    el('td', { text: when(v.newest) }),
    el('td', { class: 'num', text: v.dr_lag_seconds > 0 ? Math.round(v.dr_lag_seconds / 60) + ' min' : (v.dr_target ? 'in sync' : '—') }),
    el('td', {}, can('backup') ? el('button', { type: 'button', class: 'backup-now', onclick: (ev) => backupNow(v.name, ev.target), text: 'Back up now' }) : null)));
  render(heading('Protected VMs'),
    data.vms.length === 0 ? el('p', { class: 'muted', text: 'No protected VM yet: the first scheduled run lists them.' }) :
      el('table', { id: 'vms' },
        el('thead', {}, el('tr', {}, ['VM', 'Policy', 'Last success', 'Last result', 'RPO', 'Newest point', 'DR lag', ''].map((h) => el('th', { text: h })))),
        el('tbody', {}, rows)));
}

// ---- a VM's restore points

async function vmPage(vm) {
  const data = await api('GET', '/api/v1/vms/' + seg(vm) + '/points');
  const rows = data.points.map((p) => {
    const at = p.time.replace(/\.\d+Z$/, 'Z');
    const acts = el('div', { class: 'actions' },
      el('a', { class: 'button', href: '#/vm/' + seg(vm) + '/' + seg(at), text: 'Browse' }),
      can('restore') ? el('a', { class: 'button', href: '#/restore/' + seg(vm) + '/' + seg(at), text: 'Restore…' }) : null,
      can('restore') ? el('a', { class: 'button', href: '#/export/' + seg(vm) + '/' + seg(at), text: 'Export…' }) : null,
      can('lock') ? lockControl(vm, at) : null,
      can('forget') ? forgetControl(vm, at) : null);
    return el('tr', { 'data-point': at },
      el('td', {}, el('a', { href: '#/vm/' + seg(vm) + '/' + seg(at), text: when(at) })),
      el('td', { text: p.level }),
      el('td', { text: p.consistency || '—' }),
      el('td', { class: 'num', text: bytes(p.size) }),
      el('td', { class: 'num', text: bytes(p.new_bytes) }),
      el('td', { text: p.locked_until ? 'until ' + when(p.locked_until) : '—' }),
      el('td', { text: p.replicated ? 'yes' : (p.replicated === false ? 'no' : '—') }),
      el('td', {}, acts));
  });
  render(
    el('div', { class: 'crumbs' }, el('a', { href: '#/', text: 'Dashboard' }), '›', el('span', { text: vm })),
    heading('Restore points of ' + vm, ' ', can('backup') ? el('button', { type: 'button', class: 'backup-now', onclick: (ev) => backupNow(vm, ev.target), text: 'Back up now' }) : null),
    data.points.length === 0 ? el('p', { class: 'muted', text: 'No restore point yet.' }) :
      el('table', { id: 'points' },
        el('thead', {}, el('tr', {}, ['Time', 'Level', 'Consistency', 'Size', 'New data', 'Lock', 'Replicated', ''].map((h) => el('th', { text: h })))),
        el('tbody', {}, rows)));
}

function lockControl(vm, at) {
  const days = el('input', { type: 'number', min: '1', value: '30', size: '4', 'aria-label': 'days', class: 'lock-days' });
  const go = el('button', { type: 'button', class: 'lock', text: 'Lock' });
  go.addEventListener('click', async () => {
    const n = Number(days.value);
    if (!Number.isInteger(n) || n < 1) {
      toast('Lock for a whole number of days, 1 or more', true);
      return;
    }
    const until = new Date(Date.now() + n * 86400000).toISOString().replace(/\.\d+Z$/, 'Z');
    try {
      await api('POST', pointAPI(vm, at) + '/lock', { until });
      toast('Locked until ' + when(until));
      route();
    } catch (e) { toast(e.message, true); }
  });
  return el('span', { class: 'actions' }, days, el('span', { class: 'muted', text: 'days' }), go);
}

function forgetControl(vm, at) {
  const b = el('button', { type: 'button', class: 'danger forget', text: 'Forget' });
  b.addEventListener('click', async () => {
    if (!b.dataset.armed) {
      b.dataset.armed = '1';
      b.textContent = 'Forget for good?';
      return;
    }
    try {
      await api('POST', pointAPI(vm, at) + '/forget');
      toast('Forgot ' + vm + '@' + at);
      route();
    } catch (e) { toast(e.message, true); }
  });
  return b;
}

// ---- a restore point's files

async function browse(vm, at, parts, offset) {
  offset = offset || 0;
  const data = await api('GET', pointAPI(vm, at) + '/files/' + pathAPI(parts) + (offset ? '?offset=' + offset : ''));
  const base = '#/vm/' + seg(vm) + '/' + seg(at);
  const crumbs = [el('a', { href: '#/', text: 'Dashboard' }), '›', el('a', { href: '#/vm/' + seg(vm), text: vm }), '›',
    el('a', { href: base, text: when(at) })];
  parts.forEach((p, i) => {
    crumbs.push('›', el('a', { href: base + '/' + pathAPI(parts.slice(0, i + 1)), text: p }));
  });
  const download = (sub, fmt) => pointAPI(vm, at) + '/download/' + pathAPI(sub) + (fmt ? '?format=' + fmt : '');
  if (data.entry) {
    const e = data.entry;
    render(el('div', { class: 'crumbs' }, crumbs), heading(e.name),
      el('p', {}, bytes(e.size) + ', modified ' + when(e.mtime) + ' '),
      el('a', { class: 'button primary', href: download(parts), download: e.name, text: 'Download' }));
    return;
  }
  const rows = data.entries.map((e) => {
    const sub = parts.concat([e.name]);
    const name = e.type === 'dir' ? el('a', { href: base + '/' + pathAPI(sub), text: e.name + '/' }) : el('span', { text: e.name });
    let dl = null;
    if (e.type === 'file') dl = el('a', { class: 'button', href: download(sub), download: e.name, text: 'Download' });
    if (e.type === 'dir') {
      dl = el('span', { class: 'actions' },
        el('a', { class: 'button', href: download(sub, 'tar.gz'), download: e.name + '.tar.gz', text: '.tar.gz' }),
        el('a', { class: 'button', href: download(sub, 'zip'), download: e.name + '.zip', text: '.zip' }));
    }
    return el('tr', { 'data-name': e.name, 'data-type': e.type },
      el('td', {}, name, e.type === 'symlink' ? el('span', { class: 'muted', text: ' → ' + e.target }) : null),
      el('td', { text: e.type }),
      el('td', { class: 'num', text: e.type === 'file' ? bytes(e.size) : '' }),
      el('td', { text: when(e.mtime) }),
      el('td', {}, dl));
  });
  const here = parts.length > 0 ? el('p', { class: 'actions' }, 'This directory:',
    el('a', { class: 'button', href: download(parts, 'tar.gz'), text: 'Download .tar.gz' }),
    el('a', { class: 'button', href: download(parts, 'zip'), text: 'Download .zip' })) : null;
  // A large directory comes a page at a time.
  const shown = data.offset + data.entries.length;
  const more = shown < data.total ? el('p', { class: 'actions' },
    el('span', { class: 'muted', text: (data.offset + 1) + '–' + shown + ' of ' + data.total }),
    el('button', { type: 'button', id: 'next-page', onclick: () => browse(vm, at, parts, shown), text: 'Next names' })) : null;
  render(el('div', { class: 'crumbs' }, crumbs),
    heading(parts.length ? parts[parts.length - 1] : vm + ' at ' + when(at)),
    parts.length === 0 ? el('p', { class: 'muted', text: 'Each disk-N is a disk; part-M its partitions, with the guest\'s files.' }) : null,
    here,
    el('table', { id: 'files' },
      el('thead', {}, el('tr', {}, ['Name', 'Type', 'Size', 'Modified', ''].map((h) => el('th', { text: h })))),
      el('tbody', {}, rows)),
    more);
}

// ---- restore

// pointCrumbs is the trail to a restore point's form.
function pointCrumbs(vm, at) {
  return el('div', { class: 'crumbs' }, el('a', { href: '#/', text: 'Dashboard' }), '›', el('a', { href: '#/vm/' + seg(vm), text: vm }), '›', el('span', { text: when(at) }));
}

function restoreForm(vm, at) {
  const field = (id, label, hint, value) => [el('label', { for: id, text: label }),
    el('input', { type: 'text', id, name: id, value: value || '' }), hint ? el('div', { class: 'hint', text: hint }) : null];
  const netmap = el('textarea', { id: 'network_map', name: 'network_map', rows: '3' });
  const power = el('input', { type: 'checkbox', id: 'power_on', name: 'power_on' });
  const instant = el('input', { type: 'checkbox', id: 'instant', name: 'instant' });
  const form = el('form', { class: 'card', id: 'restore' },
    field('cluster', 'Cluster', 'A [[cluster]] of the daemon\'s configuration (a Prism or an XCP-ng pool); empty: the VM\'s policy\'s.'),
    field('target_cluster', 'AHV cluster', 'Name or UUID; empty: the VM\'s own when it is there, else the only one.'),
    field('name', 'New VM name', 'Empty: the original name (refused while that VM exists).'),
    field('container', 'Storage container', 'On a Prism. Empty: the cluster\'s default.'),
    field('sr', 'Storage repository (SR)', 'On an XCP-ng pool, name or UUID. Empty: each disk\'s own SR, else the pool\'s default.'),
    el('label', { for: 'network_map', text: 'Network map' }), netmap,
    el('div', { class: 'hint', text: 'One SOURCE=TARGET per line (names or UUIDs).' }),
    field('disks', 'Disks', 'Indexes, e.g. 0,2; empty: all.'),
    el('label', { for: 'data_path', text: 'Data path' }),
    el('select', { id: 'data_path', name: 'data_path' }, ['auto', 'iscsi', 'rest'].map((p) => el('option', { value: p, text: p }))),
    el('div', { class: 'hint', text: 'auto: iSCSI to a volume group; rest: image uploads through Prism.' }),
    el('label', {}, power, ' Power on after the restore'),
    el('label', {}, instant, ' Instant: run the VM at once from the backup (over NFS) while it hydrates'),
    el('div', { class: 'hint', text: 'Needs instant_nfs on the cluster; finish it on the Instant restores page once hydrated.' }),
    el('p', {}, el('button', { class: 'primary', type: 'submit', text: 'Restore' })));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = (id) => form.elements[id].value.trim();
    const body = { cluster: v('cluster'), target_cluster: v('target_cluster'), name: v('name'), container: v('container'), sr: v('sr'), power_on: power.checked, data_path: v('data_path') };
    if (instant.checked) { body.instant = true; delete body.data_path; }
    const map = {};
    for (const line of netmap.value.split('\n')) {
      const [src, dst] = line.split('=').map((s) => (s || '').trim());
      if (src && dst) map[src] = dst;
    }
    if (Object.keys(map).length) body.network_map = map;
    if (v('disks')) body.disks = v('disks').split(',').map((s) => Number(s.trim()));
    for (const k of Object.keys(body)) if (body[k] === '') delete body[k];
    await queueJob(pointAPI(vm, at) + '/restore', body, 'Restore of ' + vm + '@' + at);
  });
  render(pointCrumbs(vm, at), heading('Restore ' + vm + ' from ' + when(at)), form);
}

// ---- export

function exportForm(vm, at) {
  const disks = el('input', { type: 'text', id: 'disks', name: 'disks' });
  const form = el('form', { class: 'card', id: 'export' },
    el('label', { for: 'format', text: 'Format' }),
    el('select', { id: 'format', name: 'format' }, ['qcow2', 'vmdk', 'vhdx', 'raw'].map((f) => el('option', { value: f, text: f }))),
    el('div', { class: 'hint', text: 'qcow2 for KVM (with a libvirt XML), vmdk for vSphere (with an OVF), vhdx for Hyper-V, raw for anything.' }),
    el('label', { for: 'disks', text: 'Disks' }), disks,
    el('div', { class: 'hint', text: 'Indexes, e.g. 0,2; empty: all.' }),
    el('p', {}, el('button', { class: 'primary', type: 'submit', text: 'Export' })));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { format: form.elements.format.value };
    if (disks.value.trim()) body.disks = disks.value.split(',').map((x) => Number(x.trim()));
    await queueJob(pointAPI(vm, at) + '/export', body, 'Export of ' + vm + '@' + at);
  });
  render(pointCrumbs(vm, at), heading('Export ' + vm + ' from ' + when(at)),
    el('p', { class: 'muted', text: 'The files are made on the backup host, then downloaded from the job; they are kept 7 days.' }), form);
}

// ---- jobs

function vmNames(j) { return (j.vms || []).map((v) => v.vm).join(', '); }

async function jobsPage() {
  const data = await api('GET', '/api/v1/jobs');
  const rows = data.jobs.slice(0, 200).map((j) => el('tr', { 'data-job': j.id },
    el('td', {}, el('a', { href: '#/job/' + seg(j.id), text: when(j.start) })),
    el('td', { text: j.kind }), el('td', { text: j.policy || '' }), el('td', { text: j.trigger || '' }),
    el('td', {}, badge(j.result)),
    el('td', { text: vmNames(j) }),
    el('td', { class: 'num', text: j.end ? Math.round((Date.parse(j.end) - Date.parse(j.start)) / 100) / 10 + ' s' : '' })));
  render(heading('Jobs'), el('table', { id: 'jobs' },
    el('thead', {}, el('tr', {}, ['Start', 'Kind', 'Policy', 'Trigger', 'Result', 'VMs', 'Took'].map((h) => el('th', { text: h })))),
    el('tbody', {}, rows)));
  if (data.jobs.some((j) => j.result === 'running' || j.result === 'queued')) poll(jobsPage, 2000);
}

async function jobPage(id) {
  const j = await api('GET', '/api/v1/jobs/' + seg(id));
  const running = j.result === 'running' || j.result === 'queued';
  const vms = (j.vms || []).map((v) => {
    const pct = v.total_bytes ? Math.min(100, Math.round(100 * v.done_bytes / v.total_bytes)) : 0;
    const fill = el('div');
    fill.style.width = pct + '%'; // through the CSSOM: the page's CSP allows no inline style
    return el('tr', { 'data-vm': v.vm },
      el('td', { text: v.vm }), el('td', {}, badge(v.result)),
      el('td', {}, running ? [el('div', { class: 'bar' }, fill), el('div', { class: 'muted', text: bytes(v.done_bytes) + ' of ' + bytes(v.total_bytes) })] : (v.restore_point || '')),
      el('td', { class: 'num', text: v.bytes_read ? bytes(v.bytes_read) : '' }),
      el('td', { class: 'num', text: v.bytes_stored ? bytes(v.bytes_stored) : '' }),
      el('td', { class: v.error ? 'bad' : null, text: v.error || '' }));
  });
  const log = (j.log || []).map((l) => when(l.time) + ' ' + l.level + ' ' + l.msg).join('\n');
  render(el('div', { class: 'crumbs' }, el('a', { href: '#/jobs', text: 'Jobs' }), '›', el('span', { text: id })),
    heading(j.kind + ' job ', badge(j.result)),
    el('p', { class: 'muted', id: 'job-meta', text: [j.policy && 'policy ' + j.policy, j.trigger && 'trigger ' + j.trigger, 'started ' + when(j.start), j.end && 'ended ' + when(j.end)].filter(Boolean).join(' · ') }),
    j.error ? el('p', { class: 'bad', text: j.error }) : null,
    (j.notes || []).length ? el('ul', {}, j.notes.map((n) => el('li', { text: n }))) : null,
    el('table', { id: 'job-vms' },
      el('thead', {}, el('tr', {}, ['VM', 'Result', running ? 'Progress' : 'Restore point', 'Read', 'Stored', 'Error'].map((h) => el('th', { text: h })))),
      el('tbody', {}, vms)),
    (j.files || []).length ? [el('h2', { text: 'Files' }), el('ul', { id: 'job-files' }, j.files.map((f) =>
      el('li', {}, el('a', { href: '/api/v1/jobs/' + seg(j.id) + '/files/' + seg(f), download: f, text: f }))))] : null,
    running ? [el('h2', { text: 'Log' }), el('pre', { class: 'log', id: 'job-log', text: log || 'waiting for a slot…' })] : null);
  if (running) poll(() => jobPage(id), 1000);
}

// ---- instant restores

async function instantPage() {
  const data = await api('GET', '/api/v1/instant');
  const end = (v, what, button) => queueJob('/api/v1/instant/' + seg(v.cluster) + '/' + seg(v.name) + '/' + what, undefined, '', button);
  const rows = data.vms.map((v) => {
    const size = v.disks.reduce((n, d) => n + d.size, 0);
    const left = v.disks.reduce((n, d) => n + d.remaining_bytes, 0);
    const pct = size ? Math.round(100 * (size - left) / size) : 100;
    const fill = el('div');
    fill.style.width = pct + '%';
    return el('tr', { 'data-vm': v.name },
      el('td', { text: v.name }), el('td', { text: v.cluster }), el('td', { text: v.source_vm || '—' }),
      el('td', { text: v.power_state || '' }),
      el('td', {}, el('div', { class: 'bar' }, fill), el('div', { class: 'muted', text: v.hydrated ? 'hydrated: finish it' : pct + '% · ' + bytes(left) + ' left of ' + bytes(size) })),
      el('td', {}, can('restore') ? el('span', { class: 'actions' },
        // Finish once hydrated: it then only detaches the backup.
        v.hydrated ? el('button', { type: 'button', class: 'finish', onclick: (ev) => end(v, 'finish', ev.target), text: 'Finish' }) : null,
        el('button', { type: 'button', class: 'danger cancel', onclick: (ev) => end(v, 'cancel', ev.target), text: 'Cancel (delete VM)' })) : null));
  });
  render(heading('Instant restores'),
    el('p', { class: 'muted', text: 'VMs running from the backup over NFS while their disks hydrate. Finish waits for the hydration, then detaches the backup.' }),
    data.vms.length === 0 ? el('p', { class: 'muted', id: 'no-instant', text: 'No VM runs from the backup.' }) :
      el('table', { id: 'instant' },
        el('thead', {}, el('tr', {}, ['VM', 'Prism', 'Restored from', 'Power', 'Hydration', ''].map((h) => el('th', { text: h })))),
        el('tbody', {}, rows)));
  if (data.vms.some((v) => !v.hydrated)) poll(instantPage, 3000);
}

// ---- repository

async function repoPage() {
  const h = await api('GET', '/api/v1/repository');
  const rows = [
    ['Reachable', h.reachable ? 'yes' : 'no'],
    ['Restore points', String(h.restore_points)],
    ['Data (logical)', bytes(h.logical_bytes)],
    ['Stored', bytes(h.stored_bytes)],
    ['Deduplication', h.dedup_ratio ? h.dedup_ratio.toFixed(2) + '×' : '—'],
    ['Compression', h.compression_ratio ? h.compression_ratio.toFixed(2) + '×' : '—'],
    ['Reclaimable by gc', bytes(h.reclaimable_bytes)],
    ['Last verify', when(h.last_verify)],
    ['Verify errors', String(h.verify_errors)],
  ];
  render(heading('Repository'), el('dl', { class: 'figures', id: 'health' }, rows.map(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })])));
}

// ---- routing

async function route() {
  stopPolling();
  if (!state.me) {
    try {
      state.me = await api('GET', '/api/v1/me');
    } catch (e) {
      return; // api showed the login form
    }
    showUser();
  }
  let parts;
  try {
    parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  } catch (e) {
    render(el('p', { class: 'bad', id: 'error', text: 'No page ' + location.hash }));
    return;
  }
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.getAttribute('href') === '#/' + (parts[0] || ''));
  try {
    switch (parts[0]) {
      case undefined: return await dashboard();
      case 'vm': return await (parts.length === 2 ? vmPage(parts[1]) : browse(parts[1], parts[2], parts.slice(3)));
      case 'restore': return restoreForm(parts[1], parts[2]);
      case 'export': return exportForm(parts[1], parts[2]);
      case 'jobs': return await jobsPage();
      case 'job': return await jobPage(parts[1]);
      case 'instant': return await instantPage();
      case 'repository': return await repoPage();
      default: render(el('p', { class: 'bad', text: 'No page ' + location.hash }));
    }
  } catch (e) {
    if (state.me) render(el('p', { class: 'bad', id: 'error', text: e.message }));
  }
}

window.addEventListener('hashchange', route);
document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('logout').addEventListener('click', logout);
  route();
});
