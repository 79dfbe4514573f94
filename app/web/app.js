// The dashboard: a client of the same API as curl and Jenkins. Signed in by a session cookie (POST /session);
// every changing request carries the CSRF header; everything shown is set as text, never as HTML.
const CSRF = { 'X-Ec2-Creator-Csrf': '1' };
const $ = (id) => document.getElementById(id);

const state = {
  me: null,
  instances: new Map(),
  /** instance id → id of the operation in flight on it */
  busy: new Map(),
  operations: new Map(),
  policy: null,
  stream: null,
};

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers }, credentials: 'same-origin' };
  if (method !== 'GET') Object.assign(init.headers, CSRF);
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  return { ok: response.ok, status: response.status, data };
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text ?? '—';
  if (className) td.className = className;
  return td;
}

function button(label, onClick, disabled) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.disabled = disabled;
  b.addEventListener('click', onClick);
  return b;
}

function age(iso) {
  if (!iso) return '—';
  const minutes = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 60000));
  if (minutes < 60) return `${minutes} min`;
  if (minutes < 48 * 60) return `${Math.round(minutes / 60)} h`;
  return `${Math.round(minutes / 1440)} d`;
}

const isOperator = () => state.me?.role === 'operator';

function renderInstances() {
  const tbody = $('instances').querySelector('tbody');
  const name = $('filter-name').value.trim().toLowerCase();
  const wanted = $('filter-state').value;
  const showTerminated = $('show-terminated').checked || wanted === 'terminated';
  const rows = [...state.instances.values()]
    .filter((i) => showTerminated || i.state !== 'terminated')
    .filter((i) => !wanted || i.state === wanted)
    .filter((i) => !name || i.name.toLowerCase().includes(name))
    .sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  tbody.replaceChildren(...rows.map((instance) => {
    const tr = document.createElement('tr');
    tr.dataset.id = instance.id;
    tr.append(cell(instance.name), cell(instance.state, `state state-${instance.state}`), cell(instance.instance_type), cell(instance.public_ip));
    const ssh = document.createElement('td');
    if (instance.ssh_string) {
      const code = document.createElement('code');
      code.textContent = instance.ssh_string;
      ssh.append(code, ' ', button('Copy', () => navigator.clipboard?.writeText(instance.ssh_string), false));
    } else {
      ssh.textContent = '—';
    }
    tr.append(ssh, cell(instance.owner), cell(instance.expires_at ? `${instance.on_expiry} at ${new Date(instance.expires_at).toLocaleString()}` : null),
      cell(age(instance.launch_time ?? instance.created_at)));
    if (isOperator()) {
      const actions = document.createElement('td');
      const busy = state.busy.has(instance.id);
      const gone = instance.state === 'terminated';
      actions.append(
        button('Start', () => change(instance, 'start'), busy || gone || instance.state !== 'stopped'),
        ' ',
        button('Stop', () => change(instance, 'stop'), busy || gone || instance.state !== 'running'),
        ' ',
        button('Terminate', () => confirmTerminate(instance), busy || gone),
      );
      tr.append(actions);
    }
    return tr;
  }));
}

function renderOperations() {
  const tbody = $('operation-list').querySelector('tbody');
  const status = $('filter-op-status').value;
  const kind = $('filter-op-kind').value;
  const rows = [...state.operations.values()]
    .filter((o) => (!status || o.status === status) && (!kind || o.kind === kind))
    .sort((a, b) => (a.created_at < b.created_at ? 1 : -1))
    .slice(0, 100);
  tbody.replaceChildren(...rows.map((op) => {
    const tr = document.createElement('tr');
    tr.dataset.id = op.id;
    const error = document.createElement('td');
    if (op.error_message || op.stderr_tail) {
      const pre = document.createElement('pre');
      pre.textContent = [op.error_message, op.stderr_tail].filter(Boolean).join('\n');
      error.append(pre);
    } else {
      error.textContent = '—';
    }
    tr.append(
      cell(op.status), cell(op.kind), cell(op.instance_id), cell(op.actor), cell(op.client_address),
      cell(op.started_at ?? op.created_at), cell(op.duration_ms === null ? null : `${(op.duration_ms / 1000).toFixed(1)} s`),
      cell(op.exit_code === null ? null : String(op.exit_code)), error,
    );
    return tr;
  }));
}

function showProblem(target, problem) {
  target.textContent = problem?.detail ?? problem?.title ?? 'The request failed';
}

async function change(instance, kind) {
  $('action-error').textContent = '';
  state.busy.set(instance.id, 'pending');
  renderInstances();
  const path = kind === 'terminate' ? `/instances/${instance.id}` : `/instances/${instance.id}/${kind}`;
  const result = await api(kind === 'terminate' ? 'DELETE' : 'POST', path, undefined, { Prefer: 'respond-async' });
  if (!result.ok) {
    state.busy.delete(instance.id);
    showProblem($('action-error'), result.data);
    renderInstances();
  }
}

function confirmTerminate(instance) {
  const dialog = $('confirm-terminate');
  $('confirm-name').textContent = instance.name;
  $('confirm-input').value = '';
  $('confirm-ok').disabled = true;
  dialog.dataset.id = instance.id;
  dialog.showModal();
  $('confirm-input').focus();
}

function applyOperation(op) {
  state.operations.set(op.id, op);
  if (op.instance_id) {
    if (op.status === 'queued' || op.status === 'running') state.busy.set(op.instance_id, op.id);
    else if (state.busy.get(op.instance_id) === op.id || state.busy.get(op.instance_id) === 'pending') state.busy.delete(op.instance_id);
  }
  if (op.status === 'failed' && op.kind !== 'sync') {
    $('action-error').textContent = `${op.kind} ${op.instance_id ?? ''} failed: ${op.error_message ?? op.error_code ?? ''}`;
  }
}

function listen() {
  state.stream?.close();
  const stream = new EventSource('/events');
  state.stream = stream;
  const instanceEvent = (event) => {
    const data = JSON.parse(event.data);
    state.instances.set(data.instance.id, data.instance);
    renderInstances();
  };
  for (const type of ['instance.created', 'instance.state_changed', 'instance.terminated', 'instance.updated', 'instance.expiring']) {
    stream.addEventListener(type, instanceEvent);
  }
  for (const type of ['operation.queued', 'operation.started', 'operation.succeeded', 'operation.failed', 'operation.interrupted']) {
    stream.addEventListener(type, (event) => {
      applyOperation(JSON.parse(event.data).operation);
      renderOperations();
      renderInstances();
    });
  }
  stream.addEventListener('stream.reset', (event) => {
    const data = JSON.parse(event.data);
    for (const instance of data.instances) state.instances.set(instance.id, instance);
    for (const op of data.operations) applyOperation(op);
    renderInstances();
    renderOperations();
  });
  stream.addEventListener('stream.ready', () => {
    $('live').textContent = '● live';
  });
  stream.addEventListener('error', () => {
    $('live').textContent = '○ reconnecting…';
  });
}

async function load() {
  // The stream first, then the lists: a change between the two is seen twice, never missed.
  listen();
  const [instances, terminated, operations, policy] = await Promise.all([
    api('GET', '/instances?limit=100'),
    api('GET', '/instances?limit=100&state=terminated'),
    api('GET', '/operations?limit=100'),
    api('GET', '/launch-policy'),
  ]);
  for (const list of [terminated, instances]) for (const instance of list.data?.instances ?? []) if (!state.instances.has(instance.id)) state.instances.set(instance.id, instance);
  for (const op of (operations.data?.operations ?? []).reverse()) if (!state.operations.has(op.id)) applyOperation(op);
  state.policy = policy.data;
  const types = $('create-type');
  types.replaceChildren(...(state.policy?.allowed_instance_types ?? []).map((type) => {
    const option = document.createElement('option');
    option.textContent = type;
    return option;
  }));
  if (state.policy) $('create-storage').max = String(state.policy.max_storage_gb);
  renderInstances();
  renderOperations();
}

function showSignedIn(me) {
  state.me = me;
  $('sign-in').hidden = true;
  $('fleet').hidden = false;
  $('operations').hidden = false;
  $('who').hidden = false;
  $('who').textContent = me.name ? `${me.name} (${me.role})` : `authentication disabled (${me.role})`;
  $('sign-out').hidden = me.via !== 'session';
  for (const element of document.querySelectorAll('.operator-only')) element.hidden = !isOperator();
  void load();
}

function showSignIn() {
  state.stream?.close();
  state.me = null;
  $('sign-in').hidden = false;
  $('fleet').hidden = true;
  $('operations').hidden = true;
  $('who').hidden = true;
  $('sign-out').hidden = true;
  $('token').focus();
}

$('sign-in-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('sign-in-error').textContent = '';
  const token = $('token').value.trim();
  const result = await api('POST', '/session', { token });
  $('token').value = '';
  if (!result.ok) {
    showProblem($('sign-in-error'), result.status === 400 ? { detail: 'That is not an API token' } : result.data);
    return;
  }
  showSignedIn(result.data);
});

$('sign-out').addEventListener('click', async () => {
  await api('DELETE', '/session');
  state.instances.clear();
  state.operations.clear();
  showSignIn();
});

$('create-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  for (const element of $('create-form').querySelectorAll('.error')) element.textContent = '';
  const body = {
    name: $('create-name').value.trim(),
    ami: $('create-ami').value.trim(),
    instance_type: $('create-type').value,
    storage_gb: Number($('create-storage').value),
    ...($('create-sg').checked ? { create_security_group: true } : {}),
    ...($('create-sg').checked && $('create-ssh-cidr').value.trim() ? { ssh_cidr: $('create-ssh-cidr').value.trim() } : {}),
    ...($('create-ttl').value ? { ttl_hours: Number($('create-ttl').value) } : {}),
  };
  const result = await api('POST', '/instances', body, { Prefer: 'respond-async' });
  if (result.ok) {
    $('create-name').value = '';
    return;
  }
  let placed = false;
  for (const error of result.data?.errors ?? []) {
    const target = $(`error-${error.field}`);
    if (target) {
      target.textContent = error.message;
      placed = true;
    }
  }
  if (!placed) showProblem($('create-error'), result.data);
});

$('confirm-input').addEventListener('input', () => {
  $('confirm-ok').disabled = $('confirm-input').value !== $('confirm-name').textContent;
});
$('confirm-terminate').addEventListener('close', () => {
  const dialog = $('confirm-terminate');
  const instance = state.instances.get(dialog.dataset.id);
  if (dialog.returnValue === 'terminate' && instance && $('confirm-input').value === instance.name) void change(instance, 'terminate');
});

for (const id of ['filter-name', 'filter-state', 'show-terminated']) $(id).addEventListener('input', renderInstances);
for (const id of ['filter-op-status', 'filter-op-kind']) $(id).addEventListener('input', renderOperations);

const me = await api('GET', '/session');
if (me.ok) showSignedIn(me.data);
else showSignIn();
