// Tollgate's approver page. Waiting requests arrive over one server-sent event stream
// (GET /api/events, read with fetch so the token travels in a header, never in a URL);
// decisions are POSTed with the hash of the request the approver was shown. Everything an
// agent wrote is put on the page with textContent, never parsed as markup.
'use strict';

const TOKEN_KEY = 'tollgate-approver-token';
const RECONNECT_MS = 2000;
const GRANT_CHOICES = [
  ['', 'this request only'],
  ['3600', 'and the same shape for 1 hour'],
  ['28800', 'and the same shape for 8 hours'],
  ['86400', 'and the same shape for 24 hours'],
];

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  pending: new Map(),
  stream: null,
};

const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function call(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (options.body) headers['Content-Type'] = 'application/json';
  return fetch(path, { ...options, headers, cache: 'no-store' });
}

async function signIn(token) {
  state.token = token.trim();
  let response;
  try {
    response = await call('/api/me');
  } catch (error) {
    return showSignIn(`The gateway did not answer: ${error.message}`);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) return showSignIn(body.error || `refused (${response.status})`);
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $('sign-in').hidden = true;
  $('queue').hidden = false;
  $('sign-out').hidden = false;
  $('who').textContent = `signed in as ${body.subject}`;
  listen();
}

function showSignIn(message) {
  if (state.stream) state.stream.abort();
  state.stream = null;
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  state.pending.clear();
  render();
  setLive(false);
  $('who').textContent = '';
  $('sign-out').hidden = true;
  $('queue').hidden = true;
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = message || '';
}

function setLive(live) {
  const badge = $('live');
  badge.textContent = live ? 'live' : 'not connected';
  badge.className = live ? 'live on' : 'live off';
}

// One stream at a time; when it ends (gateway restart, network), connect again.
async function listen() {
  const controller = new AbortController();
  state.stream = controller;
  try {
    const response = await call('/api/events', { signal: controller.signal });
    if (response.status === 401 || response.status === 403) {
      const body = await response.json().catch(() => ({}));
      return showSignIn(body.error || 'sign in again');
    }
    if (!response.ok || !response.body) throw new Error(`status ${response.status}`);
    setLive(true);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        handle(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (error) {
    if (controller.signal.aborted) return;
  }
  setLive(false);
  if (state.stream === controller && state.token) {
    setTimeout(() => state.stream === controller && listen(), RECONNECT_MS);
  }
}

function handle(block) {
  let name = 'message';
  let data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('event: ')) name = line.slice(7);
    else if (line.startsWith('data: ')) data += line.slice(6);
  }
  if (!data) return;
  const value = JSON.parse(data);
  switch (name) {
    case 'snapshot':
      state.pending = new Map(value.pending.map((p) => [p.id, p]));
      break;
    case 'waiting':
    case 'updated':
      state.pending.set(value.id, value);
      break;
    case 'gone':
      state.pending.delete(value.id);
      break;
    case 'expired':
      return showSignIn('Your access token expired: sign in again.');
    default:
      return;
  }
  render();
}

function render() {
  const list = $('requests');
  for (const card of [...list.children]) {
    if (!state.pending.has(Number(card.dataset.id))) card.remove();
  }
  for (const pending of state.pending.values()) {
    const existing = $(`request-${pending.id}`);
    if (existing) {
      existing.querySelector('.approved-by').textContent = approvedBy(pending);
    } else {
      list.append(card(pending));
    }
  }
  $('count').textContent = state.pending.size ? `(${state.pending.size})` : '';
  $('empty').hidden = state.pending.size > 0;
  tick();
}

function card(p) {
  const node = element('article', 'request');
  node.id = `request-${p.id}`;
  node.dataset.id = p.id;
  node.dataset.deadline = p.deadline;

  const head = element('div', 'request-head');
  head.append(element('span', 'request-id', `#${p.id}`));
  head.append(element('span', 'rule', `rule ${p.rule}`));
  head.append(element('span', 'left'));
  node.append(head);

  node.append(element('pre', 'statement', p.statement));

  const facts = element('dl', 'facts');
  const actor = p.requester.actor || {};
  const fact = (label, value) => {
    if (value === undefined || value === null || value === '') return;
    facts.append(element('dt', null, label), element('dd', null, value));
  };
  fact('Process', [actor.exe, actor.pid != null && `pid ${actor.pid}`, actor.uid != null && `uid ${actor.uid}`]
    .filter(Boolean).join(' · ') || actor.source);
  fact('Command line', actor.cmdline);
  fact('Cgroup', actor.cgroup);
  fact('Token', p.requester.token_subject &&
    `${p.requester.token_subject}${p.requester.token_groups.length ? ` (${p.requester.token_groups.join(', ')})` : ''}`);
  fact('Target', `${p.target} · database ${p.database} as ${p.db_user}`);
  fact('Tables', p.tables.join(', ') || 'none');
  fact('Classified columns', p.classified_columns
    .map((c) => `${c.column} (${c.categories.join(', ')}) → ${c.mask}`).join('; ') || 'none');
  fact('Row estimate', p.row_estimate == null ? 'not known'
    : `${p.row_estimate} ${p.row_estimate === 1 ? 'row' : 'rows'} (the planner's estimate)`);
  fact('Waiting since', new Date(p.since).toLocaleString());
  fact('Request hash', p.request_hash.slice(0, 16) + '…');
  facts.append(element('dt', null, 'Approved by'), element('dd', 'approved-by', approvedBy(p)));
  node.append(facts);

  const form = element('form', 'decide');
  const reason = element('input', 'reason');
  reason.id = `reason-${p.id}`;
  reason.placeholder = 'Reason (recorded; a denial shows it to the agent)';
  reason.setAttribute('aria-label', `Reason for request ${p.id}`);
  const grant = element('select', 'grant');
  grant.id = `grant-${p.id}`;
  for (const [value, label] of GRANT_CHOICES) {
    const option = element('option', null, label);
    option.value = value;
    grant.append(option);
  }
  const approve = element('button', 'approve', 'Approve');
  approve.type = 'button';
  approve.id = `approve-${p.id}`;
  approve.addEventListener('click', () => decide(p, 'approve'));
  const deny = element('button', 'deny', 'Deny');
  deny.type = 'button';
  deny.id = `deny-${p.id}`;
  deny.addEventListener('click', () => decide(p, 'deny'));
  form.addEventListener('submit', (event) => event.preventDefault());
  form.append(reason, grant, approve, deny);
  node.append(form);
  node.append(element('p', 'card-error'));
  return node;
}

function approvedBy(p) {
  return p.approved_by.length ? p.approved_by.join(', ') : 'nobody yet';
}

async function decide(p, action) {
  const node = $(`request-${p.id}`);
  const reason = node.querySelector('.reason').value.trim();
  const error = node.querySelector('.card-error');
  if (action === 'deny' && !reason) {
    error.textContent = 'A denial needs a reason: the agent is shown it.';
    return;
  }
  const body = { reason: reason || undefined };
  if (action === 'approve') {
    // Bound to the request as shown: if it changed, the gateway refuses.
    body.hash = p.request_hash;
    const seconds = node.querySelector('.grant').value;
    if (seconds) body.for_s = Number(seconds);
  }
  for (const button of node.querySelectorAll('button')) button.disabled = true;
  try {
    const response = await call(`/api/approvals/${p.id}/${action}`, {
      method: 'POST',
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) return showSignIn(answer.error);
    if (!response.ok || answer.ok === false) throw new Error(answer.error || `status ${response.status}`);
    error.textContent = '';
    toast(action === 'deny' ? `Denied #${p.id}` :
      answer.approved === null ? `Approval recorded for #${p.id}: ${answer.have} of ${answer.need}` :
      `Approved #${p.id}${answer.grant ? ` (grant ${answer.grant})` : ''}`);
  } catch (failure) {
    error.textContent = failure.message;
  } finally {
    for (const button of node.querySelectorAll('button')) button.disabled = false;
  }
}

function toast(message) {
  const box = $('toast');
  box.textContent = message;
  box.className = 'shown';
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.className = ''; }, 4000);
}

// Time left, counted down on the page from each request's deadline.
function tick() {
  for (const card of document.querySelectorAll('.request')) {
    const left = Math.max(0, Math.round((Date.parse(card.dataset.deadline) - Date.now()) / 1000));
    const minutes = Math.floor(left / 60);
    card.querySelector('.left').textContent =
      `times out in ${minutes ? `${minutes} min ` : ''}${left % 60} s`;
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('sign-in-form').addEventListener('submit', (event) => {
    event.preventDefault();
    signIn($('token').value);
  });
  $('sign-out').addEventListener('click', () => showSignIn(''));
  setInterval(tick, 1000);
  if (state.token) signIn(state.token);
});
