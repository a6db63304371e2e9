// Contrail's console: plain JavaScript over the REST API (/api/v1, proto-JSON with proto
// field names). Every page is a full load of one URL of Flyte's console scheme; the
// execution page refreshes itself while the execution runs. No dependencies.
'use strict';

const BASE = '/console';
const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'ABORTED', 'TIMED_OUT', 'RECOVERED', 'SKIPPED']);
const REFRESH_MS = 1000;

// ---- DOM helpers: text is always set as text, never parsed as HTML.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}
function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const SVG_NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
function render(...children) {
  replace(document.getElementById('app'), ...children);
}
// Like replaceChildren, skipping empty parts (replaceChildren would write "null").
function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// ---- The REST API.
class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}
async function api(method, path, body) {
  const init = { method, headers: { 'Accept': 'application/json' }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch('/api/v1' + path, init);
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = { message: text }; }
  if (!resp.ok) {
    if (resp.status === 401) showLogin();
    throw new ApiError(resp.status, json);
  }
  return json;
}
const get = (path) => api('GET', path);
const enc = encodeURIComponent;
function query(params) {
  const q = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== '');
  return q.length ? '?' + q.map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&') : '';
}

function showLogin() {
  if (document.getElementById('login')) return;
  const input = h('input', { id: 'login-token', type: 'password', size: 50, placeholder: 'access token' });
  const form = h('form', {
    id: 'login', class: 'card', onsubmit: (e) => {
      e.preventDefault();
      document.cookie = `contrail_token=${enc(input.value.trim())}; path=/; SameSite=Strict`;
      location.reload();
    },
  }, h('h2', {}, 'Sign in'),
  h('p', { class: 'muted' }, 'This server needs a token: a static token (contrail auth token add) or one from its token endpoint.'),
  input, ' ', h('button', { class: 'primary', type: 'submit' }, 'Sign in'));
  document.getElementById('app').prepend(form);
}

// ---- Formatting.
function phaseClass(p) {
  if (p === 'SUCCEEDED' || p === 'RECOVERED') return 'ok';
  if (p === 'FAILED' || p === 'FAILING' || p === 'TIMED_OUT') return 'bad';
  if (p === 'ABORTED' || p === 'ABORTING' || p === 'SKIPPED') return 'stop';
  if (p === 'RUNNING' || p === 'QUEUED' || p === 'SUCCEEDING' || p === 'DYNAMIC_RUNNING' || p === 'INITIALIZING' || p === 'WAITING_FOR_RESOURCES') return 'run';
  return 'idle';
}
const badge = (p, id) => h('span', { class: 'phase ' + phaseClass(p), id, 'data-phase': p }, p || 'UNDEFINED');
function seconds(duration) {
  if (!duration) return 0;
  if (typeof duration === 'string') return parseFloat(duration) || 0;
  return Number(duration.seconds || 0) + Number(duration.nanos || 0) / 1e9;
}
function fmtDuration(sec) {
  if (!sec) return '—';
  if (sec < 1) return `${Math.round(sec * 1000)} ms`;
  if (sec < 60) return `${sec.toFixed(1)} s`;
  const m = Math.floor(sec / 60);
  return m < 60 ? `${m} m ${Math.round(sec % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} m`;
}
const time = (t) => (t ? new Date(t).getTime() : NaN);
function fmtTime(t) {
  const ms = time(t);
  return Number.isNaN(ms) || ms <= 0 ? '—' : new Date(ms).toLocaleString();
}
function execDuration(closure) {
  const d = seconds(closure.duration);
  if (d) return d;
  const start = time(closure.started_at);
  return !Number.isNaN(start) && start > 0 && !TERMINAL.has(closure.phase) ? (Date.now() - start) / 1000 : 0;
}
function typeName(t) {
  if (!t) return '?';
  if (t.simple) return t.simple === 'STRUCT' ? 'dataclass/JSON' : t.simple.toLowerCase();
  if (t.collection_type) return `List[${typeName(t.collection_type)}]`;
  if (t.map_value_type) return `Dict[str, ${typeName(t.map_value_type)}]`;
  if (t.blob) return t.blob.dimensionality === 'MULTIPART' ? 'FlyteDirectory' : 'FlyteFile';
  if (t.structured_dataset_type) return 'DataFrame';
  if (t.union_type) return `Union[${(t.union_type.variants || []).map(typeName).join(', ')}]`;
  if (t.enum_type) return `Enum[${(t.enum_type.values || []).join(', ')}]`;
  if (t.schema) return 'Schema';
  return 'unknown';
}
function idPath(p, d) { return `${BASE}/projects/${enc(p)}/domains/${enc(d)}`; }
const execLink = (id) => h('a', { href: `${idPath(id.project, id.domain)}/executions/${enc(id.name)}` }, id.name);

// ---- Literals, rendered readably. msgpack (flytekit's dataclasses and Pydantic models).
function msgpackDecode(bytes) {
  let i = 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const str = (n) => { const v = new TextDecoder().decode(bytes.subarray(i, i + n)); i += n; return v; };
  const arr = (n) => { const a = []; for (let k = 0; k < n; k++) a.push(read()); return a; };
  const map = (n) => { const o = {}; for (let k = 0; k < n; k++) { const key = read(); o[key] = read(); } return o; };
  function read() {
    const b = bytes[i++];
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xf0) === 0x80) return map(b & 0x0f);
    if ((b & 0xf0) === 0x90) return arr(b & 0x0f);
    if ((b & 0xe0) === 0xa0) return str(b & 0x1f);
    switch (b) {
      case 0xc0: return null; case 0xc2: return false; case 0xc3: return true;
      case 0xc4: { const n = bytes[i]; i += 1 + n; return `<${n} bytes>`; }
      case 0xc5: { const n = view.getUint16(i); i += 2 + n; return `<${n} bytes>`; }
      case 0xc6: { const n = view.getUint32(i); i += 4 + n; return `<${n} bytes>`; }
      case 0xca: { const v = view.getFloat32(i); i += 4; return v; }
      case 0xcb: { const v = view.getFloat64(i); i += 8; return v; }
      case 0xcc: return bytes[i++];
      case 0xcd: { const v = view.getUint16(i); i += 2; return v; }
      case 0xce: { const v = view.getUint32(i); i += 4; return v; }
      case 0xcf: { const v = view.getBigUint64(i); i += 8; return Number(v); }
      case 0xd0: { const v = view.getInt8(i); i += 1; return v; }
      case 0xd1: { const v = view.getInt16(i); i += 2; return v; }
      case 0xd2: { const v = view.getInt32(i); i += 4; return v; }
      case 0xd3: { const v = view.getBigInt64(i); i += 8; return Number(v); }
      case 0xd9: { const n = bytes[i]; i += 1; return str(n); }
      case 0xda: { const n = view.getUint16(i); i += 2; return str(n); }
      case 0xdb: { const n = view.getUint32(i); i += 4; return str(n); }
      case 0xdc: { const n = view.getUint16(i); i += 2; return arr(n); }
      case 0xdd: { const n = view.getUint32(i); i += 4; return arr(n); }
      case 0xde: { const n = view.getUint16(i); i += 2; return map(n); }
      case 0xdf: { const n = view.getUint32(i); i += 4; return map(n); }
      default: throw new Error(`msgpack type 0x${b.toString(16)} is not shown`);
    }
  }
  return read();
}
function b64bytes(b64) {
  const bin = atob(b64 || '');
  const out = new Uint8Array(bin.length);
  for (let k = 0; k < bin.length; k++) out[k] = bin.charCodeAt(k);
  return out;
}
// A literal as a plain JavaScript value (files and frames become {uri} objects).
function literalValue(lit) {
  if (!lit) return null;
  if (lit.collection) return (lit.collection.literals || []).map(literalValue);
  if (lit.map) return Object.fromEntries(Object.entries(lit.map.literals || {}).map(([k, v]) => [k, literalValue(v)]));
  if (lit.offloaded_metadata) return { offloaded: lit.offloaded_metadata.uri };
  const sc = lit.scalar || {};
  if (sc.primitive) {
    const p = sc.primitive;
    if ('integer' in p) return Number(p.integer);
    if ('float_value' in p) return p.float_value;
    if ('string_value' in p) return p.string_value;
    if ('boolean' in p) return p.boolean;
    if ('datetime' in p) return p.datetime;
    if ('duration' in p) return p.duration;
  }
  if (sc.none_type) return null;
  if (sc.union) return literalValue(sc.union.value);
  if (sc.generic) return sc.generic;
  if (sc.binary) {
    try { return sc.binary.tag === 'msgpack' ? msgpackDecode(b64bytes(sc.binary.value)) : `<${sc.binary.tag} bytes>`; } catch (e) { return `<undecodable: ${e.message}>`; }
  }
  if (sc.blob) return { file: sc.blob.uri, dir: sc.blob.metadata && sc.blob.metadata.type && sc.blob.metadata.type.dimensionality === 'MULTIPART' };
  if (sc.structured_dataset) return { dataframe: sc.structured_dataset.uri, format: sc.structured_dataset.metadata && sc.structured_dataset.metadata.structured_dataset_type && sc.structured_dataset.metadata.structured_dataset_type.format };
  if (sc.error) return { error: sc.error.message };
  if (sc.schema) return { schema: sc.schema.uri };
  return null;
}
function downloadLink(uri, label) {
  const a = h('a', { href: '#', class: 'mono', 'data-uri': uri }, label || uri);
  a.addEventListener('click', async (e) => {
    e.preventDefault();
    try {
      const r = await get('/dataproxy/artifact_urn' + query({ native_url: uri }));
      window.open(r.signed_url, '_blank', 'noopener');
    } catch (err) { alert(`Cannot sign a download link: ${err.message}`); }
  });
  return a;
}
function showValue(v) {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    if ('file' in v && typeof v.file === 'string') return h('span', {}, v.dir ? 'directory ' : 'file ', downloadLink(v.file));
    if ('dataframe' in v) return h('span', {}, `DataFrame${v.format ? ' (' + v.format + ')' : ''} `, downloadLink(v.dataframe));
    if ('offloaded' in v) return h('span', {}, 'offloaded ', downloadLink(v.offloaded));
  }
  return h('span', { class: 'literal' }, typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v, null, 2));
}
function literalTable(map, emptyText) {
  const entries = Object.entries((map && map.literals) || {});
  if (!entries.length) return h('p', { class: 'muted' }, emptyText || 'none');
  return h('table', {}, h('tbody', {}, entries.map(([k, v]) => h('tr', { 'data-name': k }, h('td', { class: 'mono' }, k), h('td', {}, showValue(literalValue(v)))))));
}
function errorBox(err, id) {
  if (!err || !(err.message || err.code)) return null;
  // Codes often carry the kind already (`USER:RuntimeError`).
  const code = err.code || '';
  const title = code.startsWith(`${err.kind}:`) ? code : `${err.kind || 'ERROR'} ${code}`.trim();
  return h('div', { class: 'error', id }, h('span', { class: 'kind' }, title + ':'), err.message || '');
}

// ---- Breadcrumbs.
function crumbs(...parts) {
  const nav = document.getElementById('crumbs');
  nav.replaceChildren();
  parts.forEach((p, k) => {
    if (k) nav.append(h('span', { class: 'sep' }, '/'));
    nav.append(p.href ? h('a', { href: p.href }, p.text) : h('span', {}, p.text));
  });
}
function projectCrumbs(p, d, ...more) {
  crumbs({ text: 'Projects', href: `${BASE}/select-project` }, { text: `${p} · ${d}`, href: `${idPath(p, d)}/executions` }, ...more);
}
function domainTabs(p, d, current) {
  const tab = (label, path) => h('a', { class: 'button' + (current === path ? ' on' : ''), href: `${idPath(p, d)}/${path}` }, label);
  return h('div', { class: 'row tabs' }, tab('Executions', 'executions'), tab('Workflows', 'workflows'), tab('Tasks', 'tasks'), tab('Launch plans', 'launchPlans'));
}

// ---- Pages.
async function projectsPage() {
  crumbs({ text: 'Projects' });
  const r = await get('/projects' + query({ limit: 100 }));
  const domainLinks = (p) => (p.domains || []).map((d) => [h('a', { href: `${idPath(p.id, d.id)}/executions` }, d.name || d.id), ' ']);
  const rows = (r.projects || []).map((p) => h('tr', { 'data-project': p.id },
    h('td', {}, p.name || p.id), h('td', { class: 'muted' }, p.description || ''), h('td', {}, domainLinks(p))));
  render(h('h1', {}, 'Projects'), h('table', { id: 'projects' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Project'), h('th', {}, 'Description'), h('th', {}, 'Domains'))),
    h('tbody', {}, rows)));
}

async function executionsPage(p, d) {
  projectCrumbs(p, d, { text: 'Executions' });
  const params = new URLSearchParams(location.search);
  const phase = params.get('phase') || '';
  const name = params.get('name') || '';
  const workflow = params.get('workflow') || '';
  const filters = [];
  if (phase) filters.push(`eq(phase,${phase})`);
  if (name) filters.push(`contains(name,${name})`);
  if (workflow) filters.push(`eq(workflow.name,${workflow})`);
  const r = await get(`/executions/${enc(p)}/${enc(d)}` + query({
    limit: 25, token: params.get('token') || '', filters: filters.join('+'),
    'sort_by.key': 'created_at', 'sort_by.direction': 'DESCENDING',
  }));
  const phases = ['', 'QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'ABORTED', 'TIMED_OUT'];
  const form = h('form', { class: 'filters', method: 'get', id: 'exec-filters' },
    h('select', { name: 'phase', id: 'filter-phase' }, phases.map((x) => h('option', { value: x, selected: x === phase }, x || 'any phase'))),
    h('input', { name: 'name', id: 'filter-name', placeholder: 'name contains', value: name }),
    h('input', { name: 'workflow', id: 'filter-workflow', placeholder: 'workflow name', value: workflow }),
    h('button', { type: 'submit' }, 'Filter'));
  const rows = (r.executions || []).map((e) => {
    const c = e.closure || {};
    const spec = e.spec || {};
    const lp = spec.launch_plan || {};
    const wf = c.workflow_id || {};
    return h('tr', { 'data-execution': e.id.name },
      h('td', {}, execLink(e.id)), h('td', {}, badge(c.phase)),
      h('td', {}, h('a', { href: `${idPath(p, d)}/workflows/${enc(wf.name || '')}` }, wf.name || ''), h('div', { class: 'muted' }, `launch plan ${lp.name || ''}`)),
      h('td', {}, fmtTime(c.started_at || c.created_at)), h('td', {}, fmtDuration(execDuration(c))));
  });
  const pager = h('div', { class: 'pager' });
  if (params.get('token')) pager.append(h('a', { href: `?${new URLSearchParams({ phase, name, workflow })}` }, '« first page'));
  if (r.token) pager.append(h('a', { id: 'next-page', href: `?${new URLSearchParams({ phase, name, workflow, token: r.token })}` }, 'next page »'));
  render(h('h1', {}, `${p} · ${d}`), domainTabs(p, d, 'executions'), form,
    h('table', { id: 'executions' }, h('thead', {}, h('tr', {}, ['Name', 'Phase', 'Workflow', 'Started', 'Duration'].map((x) => h('th', {}, x)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No executions.')))),
    pager);
}

// ---- The execution graph: nodes laid out left to right by longest path from the start.
// `compiled` is a compiled workflow (primary or sub): its template and connections.
function templateGraph(compiled) {
  const template = compiled.template || {};
  const nodes = (template.nodes || []).map((n) => ({ id: n.id, spec: n, label: nodeLabel(n) }));
  const up = (compiled.connections && compiled.connections.upstream) || {};
  const ids = new Set(nodes.map((n) => n.id));
  const edges = [];
  for (const [to, list] of Object.entries(up)) for (const from of list.ids || []) if (ids.has(from) && ids.has(to)) edges.push([from, to]);
  if (!edges.length) {
    for (const n of template.nodes || []) for (const from of n.upstream_node_ids || []) if (ids.has(from)) edges.push([from, n.id]);
  }
  return { nodes, edges };
}
function nodeLabel(n) {
  if (n.id === 'start-node') return 'start';
  if (n.id === 'end-node') return 'end';
  const name = (n.metadata && n.metadata.name) || n.id;
  return name.split('.').pop();
}
function nodeKind(n) {
  if (!n) return 'node';
  if (n.task_node) return 'task';
  if (n.workflow_node) return n.workflow_node.sub_workflow_ref ? 'subworkflow' : 'launch plan';
  if (n.branch_node) return 'branch';
  if (n.array_node) return 'map';
  if (n.gate_node) return 'gate';
  return 'node';
}
function layoutGraph(g, state, depth) {
  const W = 170, H = 46, GAPX = 46, GAPY = 18, PAD = 12;
  const rank = {};
  const preds = {};
  g.nodes.forEach((n) => { preds[n.id] = []; });
  g.edges.forEach(([a, b]) => preds[b] && preds[b].push(a));
  const visit = (id, seen) => {
    if (rank[id] !== undefined) return rank[id];
    if (seen.has(id)) return 0;
    seen.add(id);
    rank[id] = preds[id].length ? Math.max(...preds[id].map((p) => visit(p, seen) + 1)) : 0;
    return rank[id];
  };
  g.nodes.forEach((n) => visit(n.id, new Set()));
  const columns = [];
  for (const n of g.nodes) {
    const child = state.expanded.has(n.key) && n.child ? layoutGraph(n.child, state, depth + 1) : null;
    n.layout = child;
    n.w = child ? Math.max(W, child.w + 2 * PAD) : W;
    n.h = child ? child.h + H + PAD : H;
    (columns[rank[n.id]] = columns[rank[n.id]] || []).push(n);
  }
  let x = 0;
  let height = 0;
  const colHeights = columns.map((col) => col.reduce((sum, n) => sum + n.h, 0) + GAPY * (col.length - 1));
  const maxH = Math.max(0, ...colHeights);
  columns.forEach((col, k) => {
    const width = Math.max(...col.map((n) => n.w));
    let y = (maxH - colHeights[k]) / 2;
    for (const n of col) { n.x = x + (width - n.w) / 2; n.y = y; y += n.h + GAPY; }
    x += width + GAPX;
    height = Math.max(height, y);
  });
  return { g, w: Math.max(0, x - GAPX), h: maxH };
}
function drawGraph(layout, state, ox, oy, parent) {
  const byId = Object.fromEntries(layout.g.nodes.map((n) => [n.id, n]));
  for (const [a, b] of layout.g.edges) {
    const from = byId[a], to = byId[b];
    if (!from || !to) continue;
    const x1 = ox + from.x + from.w, y1 = oy + from.y + Math.min(from.h, 46) / 2;
    const x2 = ox + to.x, y2 = oy + to.y + Math.min(to.h, 46) / 2;
    const mx = (x1 + x2) / 2;
    parent.append(s('path', { class: 'edge', d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
  }
  for (const n of layout.g.nodes) {
    const x = ox + n.x, y = oy + n.y;
    const exec = state.execs.get(n.key);
    const phase = exec ? (exec.closure || {}).phase || '' : '';
    const g = s('g', { class: 'node' + (state.selected === n.key ? ' selected' : ''), 'data-node-id': n.key, 'data-phase': phase, 'data-kind': nodeKind(n.spec) });
    if (n.layout) g.append(s('rect', { class: 'group', x, y, width: n.w, height: n.h, rx: 8 }));
    g.append(s('rect', { class: 'box', x, y, width: n.w, height: 46 }));
    g.append(s('text', { x: x + 10, y: y + 19 }, n.label.length > 22 ? n.label.slice(0, 21) + '…' : n.label));
    const counts = state.itemCounts.get(n.key);
    const sub = counts ? Object.entries(counts).map(([p, c]) => `${c} ${p.toLowerCase()}`).join(' · ') : `${nodeKind(n.spec)} · ${phase || 'not started'}`;
    g.append(s('text', { class: 'phase-label', x: x + 10, y: y + 36, 'data-counts': counts ? JSON.stringify(counts) : null }, sub));
    if (n.child) {
      g.append(s('text', {
        class: 'toggle', x: x + n.w - 18, y: y + 19, 'data-toggle': n.key,
        onclick: (e) => { e.stopPropagation(); state.toggle(n.key); },
      }, state.expanded.has(n.key) ? '−' : '+'));
    }
    g.addEventListener('click', (e) => { e.stopPropagation(); state.select(n.key); });
    parent.append(g);
    if (n.layout) drawGraph(n.layout, state, x + 12, y + 46 + 6, parent);
  }
}

// The graph `g` as an SVG element with its arrow marker, laid out and drawn.
function graphSvg(g, state) {
  const layout = layoutGraph(g, state, 0);
  const svg = s('svg', { id: 'graph', width: layout.w + 40, height: layout.h + 40, viewBox: `0 0 ${layout.w + 40} ${layout.h + 40}` },
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#98a2b3' }))));
  drawGraph(layout, state, 20, 20, svg);
  return svg;
}

// The node execution id of a template node: the id the parent's children list gave it
// (by `spec_node_id`), else Flyte's form: a branch case keeps its own id (already
// prefixed by the branch), other children are `<parent>-<retry>-<child>`.
function attachKeys(g, parentKey, retry, known, keepIds) {
  for (const n of g.nodes) {
    const listed = known && known.get(n.id);
    n.key = listed || (!parentKey || keepIds ? n.id : `${parentKey}-${retry || 0}-${n.id}`);
  }
  return g;
}

async function executionPage(p, d, name, selectedNode) {
  projectCrumbs(p, d, { text: 'Executions', href: `${idPath(p, d)}/executions` }, { text: name });
  const base = `/executions/${enc(p)}/${enc(d)}/${enc(name)}`;
  let exec = await get(base);
  const wid = exec.closure.workflow_id;
  const wf = await get(`/workflows/${enc(wid.project)}/${enc(wid.domain)}/${enc(wid.name)}/${enc(wid.version)}`);
  const compiled = wf.closure.compiled_workflow;
  const subs = Object.fromEntries((compiled.sub_workflows || []).map((w) => [w.template.id.name + '@' + w.template.id.version, w]));
  const state = {
    execs: new Map(), expanded: new Set(), itemCounts: new Map(), selected: selectedNode || null,
    children: new Map(), dynamic: new Map(), attempts: new Map(),
  };
  const root = attachKeys(templateGraph(compiled.primary), '', 0);

  const header = h('div', { class: 'card', id: 'exec-header' });
  const actions = h('div', { class: 'row', id: 'exec-actions' });
  const signals = h('div', { id: 'signals' });
  const graphWrap = h('div', { class: 'graph-wrap', id: 'graph-wrap' });
  const timeline = h('div', { class: 'graph-wrap timeline', id: 'timeline' });
  const panel = h('div', { class: 'card', id: 'node-panel' }, h('p', { class: 'muted' }, 'Select a node to see its inputs, outputs, attempts and logs.'));
  render(h('h1', {}, 'Execution ', h('span', { class: 'mono', id: 'exec-name' }, name)), header, actions, signals,
    h('div', { class: 'layout' }, h('div', {}, h('h2', {}, 'Graph'), graphWrap, h('h2', {}, 'Timeline'), timeline), panel));

  // Children of expandable nodes: subworkflows, branches, dynamic workflows.
  function expandable(n) {
    const spec = n.spec;
    if (!spec) return;
    const exec = state.execs.get(n.key);
    const retry = exec && exec.metadata && exec.metadata.retry_group ? Number(exec.metadata.retry_group) : 0;
    const known = state.children.get(n.key);
    if (spec.workflow_node && spec.workflow_node.sub_workflow_ref) {
      const ref = spec.workflow_node.sub_workflow_ref;
      const sub = subs[ref.name + '@' + ref.version];
      if (sub) n.child = attachKeys(templateGraph(sub), n.key, retry, known);
    } else if (spec.branch_node) {
      const ie = spec.branch_node.if_else || {};
      const cases = [ie.case, ...(ie.other || [])].filter(Boolean).map((c) => c.then_node).filter(Boolean);
      if (ie.else_node) cases.push(ie.else_node);
      n.child = attachKeys({ nodes: cases.map((c) => ({ id: c.id, spec: c, label: nodeLabel(c) })), edges: [] }, n.key, retry, known, true);
    } else if (state.dynamic.has(n.key)) {
      n.child = attachKeys(templateGraph(state.dynamic.get(n.key).primary), n.key, retry, known);
    }
    if (n.child) n.child.nodes.forEach(expandable);
  }

  async function loadChildren(key) {
    const r = await get(`/node_executions/${enc(p)}/${enc(d)}/${enc(name)}` + query({ limit: 1000, unique_parent_id: key }));
    const ids = new Map();
    for (const ne of r.node_executions || []) {
      state.execs.set(ne.id.node_id, ne);
      ids.set((ne.metadata && ne.metadata.spec_node_id) || ne.id.node_id, ne.id.node_id);
    }
    state.children.set(key, ids);
  }
  state.toggle = async (key) => {
    if (state.expanded.has(key)) {
      state.expanded.delete(key);
    } else {
      state.expanded.add(key);
      await loadChildren(key);
      root.nodes.forEach(expandable);
    }
    state.redraw();
  };

  async function refresh() {
    exec = await get(base);
    const r = await get(`/node_executions/${enc(p)}/${enc(d)}/${enc(name)}` + query({ limit: 1000 }));
    for (const ne of r.node_executions || []) state.execs.set(ne.id.node_id, ne);
    // Dynamic workflows, once generated; children of expanded nodes.
    for (const [key, ne] of state.execs) {
      if (ne.metadata && ne.metadata.is_dynamic && !state.dynamic.has(key)) {
        try {
          const dw = await get(`/node_executions/${enc(p)}/${enc(d)}/${enc(name)}/${enc(key)}/dynamic_workflow`);
          if (dw.compiled_workflow) state.dynamic.set(key, dw.compiled_workflow);
        } catch (_) { /* not generated yet */ }
      }
    }
    for (const key of state.expanded) await loadChildren(key);
    // Task and map nodes shown: their attempts (for the timeline) and, for a map task, its
    // items by phase. An ended node's attempts are read once.
    const walk = (g) => g.nodes.forEach((n) => {
      if (n.spec && (n.spec.task_node || n.spec.array_node)) tasks.push(n);
      if (n.child && state.expanded.has(n.key)) walk(n.child);
    });
    const tasks = [];
    root.nodes.forEach(expandable);
    walk(root);
    for (const n of tasks.slice(0, 100)) {
      const key = n.key;
      const ne = state.execs.get(key);
      if (!ne) continue;
      if (TERMINAL.has((ne.closure || {}).phase) && state.attempts.has(key) && !n.spec.array_node) continue;
      const t = await get(`/task_executions/${enc(p)}/${enc(d)}/${enc(name)}/${enc(key)}` + query({ limit: 100 }));
      state.attempts.set(key, t.task_executions || []);
      if (!n.spec.array_node) continue;
      const items = new Map();
      for (const te of t.task_executions || []) {
        for (const res of ((te.closure || {}).metadata || {}).external_resources || []) {
          const prev = items.get(res.index || 0);
          if (!prev || (res.retry_attempt || 0) >= (prev.retry_attempt || 0)) items.set(res.index || 0, res);
        }
      }
      const counts = {};
      for (const res of items.values()) counts[res.phase || 'UNDEFINED'] = (counts[res.phase || 'UNDEFINED'] || 0) + 1;
      if (items.size) state.itemCounts.set(key, counts);
    }
    root.nodes.forEach(expandable);
    drawHeader();
    state.redraw();
    drawTimeline();
    await drawSignals();
    if (state.selected && state.panelLive) await state.select(state.selected, true);
  }

  function drawHeader() {
    const c = exec.closure || {};
    const spec = exec.spec || {};
    const lp = spec.launch_plan || {};
    replace(header, 
      h('div', { class: 'row' }, badge(c.phase, 'exec-phase'),
        h('span', {}, 'workflow ', h('a', { href: `${idPath(wid.project, wid.domain)}/workflow/${enc(wid.name)}/version/${enc(wid.version)}` }, wid.name)),
        h('span', {}, 'launch plan ', h('a', { href: `${idPath(lp.project || p, lp.domain || d)}/launch_plan/${enc(lp.name || '')}/version/${enc(lp.version || '')}` }, lp.name || '')),
        h('span', { class: 'muted' }, `started ${fmtTime(c.started_at)}`),
        h('span', { class: 'muted', id: 'exec-duration' }, `duration ${fmtDuration(execDuration(c))}`)),
      c.abort_metadata ? h('p', { class: 'muted' }, `Aborted: ${c.abort_metadata.cause || ''}`) : null,
      errorBox(c.error, 'exec-error'));
    replace(actions, 
      h('button', { class: 'danger', id: 'terminate', disabled: TERMINAL.has(c.phase) || c.phase === 'ABORTING', onclick: terminate }, 'Terminate'),
      h('button', { id: 'relaunch', onclick: relaunch }, 'Relaunch'),
      h('button', { id: 'recover', disabled: c.phase !== 'FAILED', onclick: recover }, 'Recover'));
  }
  async function terminate() {
    if (!confirm('Terminate this execution?')) return;
    await api('DELETE', base, { id: exec.id, cause: 'terminated from the console' });
    await refresh();
  }
  async function relaunch() {
    const r = await api('POST', '/executions/relaunch', { id: exec.id });
    location.href = `${idPath(r.id.project, r.id.domain)}/executions/${enc(r.id.name)}`;
  }
  async function recover() {
    const r = await api('POST', '/executions/recover', { id: exec.id });
    location.href = `${idPath(r.id.project, r.id.domain)}/executions/${enc(r.id.name)}`;
  }

  state.redraw = () => {
    replace(graphWrap, graphSvg(root, state));
  };

  function drawTimeline() {
    const rows = [...state.execs.values()].filter((ne) => !['start-node', 'end-node'].includes(ne.id.node_id) && (ne.closure || {}).started_at);
    rows.sort((a, b) => time(a.closure.started_at) - time(b.closure.started_at));
    if (!rows.length) { replace(timeline, h('p', { class: 'muted' }, 'Nothing has started yet.')); return; }
    const t0 = Math.min(...rows.map((ne) => time(ne.closure.started_at)));
    const end = (ne) => {
      const dur = seconds(ne.closure.duration);
      return dur ? time(ne.closure.started_at) + dur * 1000 : (TERMINAL.has(ne.closure.phase) ? time(ne.closure.updated_at) : Date.now());
    };
    const t1 = Math.max(...rows.map(end), t0 + 1);
    const LABEL = 190, WIDTH = 640, ROW = 22;
    const scale = (t) => LABEL + ((t - t0) / (t1 - t0)) * WIDTH;
    const svg = s('svg', { id: 'gantt', width: LABEL + WIDTH + 20, height: rows.length * ROW + 30 });
    rows.forEach((ne, k) => {
      const y = k * ROW + 4;
      const phase = ne.closure.phase;
      const color = { ok: '#66bb6a', bad: '#e57373', run: '#ffb74d', stop: '#a1887f', idle: '#b0bec5' }[phaseClass(phase)];
      const x1 = scale(time(ne.closure.started_at)), x2 = Math.max(scale(end(ne)), x1 + 2);
      svg.append(s('g', { 'data-node-id': ne.id.node_id },
        s('text', { x: 4, y: y + 13 }, ne.id.node_id.length > 26 ? '…' + ne.id.node_id.slice(-25) : ne.id.node_id),
        s('rect', { class: 'bar', x: x1, y, width: x2 - x1, height: ROW - 6, fill: color }, s('title', {}, `${ne.id.node_id}: ${phase}, ${fmtDuration((end(ne) - time(ne.closure.started_at)) / 1000)}`))));
      for (const te of state.attempts.get(ne.id.node_id) || []) {
        const c = te.closure || {};
        if (!c.started_at) continue;
        const a1 = scale(time(c.started_at));
        const dur = seconds(c.duration);
        const a2 = dur ? scale(time(c.started_at) + dur * 1000) : scale(Date.now());
        svg.append(s('rect', { class: 'attempt', x: a1, y: y + ROW - 9, width: Math.max(a2 - a1, 2), height: 3 }, s('title', {}, `attempt ${te.id.retry_attempt || 0}: ${c.phase}`)));
      }
    });
    svg.append(s('text', { x: LABEL, y: rows.length * ROW + 22, class: 'phase-label' }, `0 s — ${fmtDuration((t1 - t0) / 1000)}`));
    replace(timeline, svg);
  }

  async function drawSignals() {
    let list;
    try { list = await get(`/signals/${enc(p)}/${enc(d)}/${enc(name)}` + query({ limit: 100 })); } catch (_) { return; }
    const pending = (list.signals || []).filter((sg) => !sg.value);
    if (!pending.length || TERMINAL.has(exec.closure.phase)) { signals.replaceChildren(); return; }
    if (signals.contains(document.activeElement)) return; // someone is typing
    replace(signals, h('h2', {}, 'Waiting for input'), pending.map((sg) => {
      const t = sg.type || {};
      const set = async (literal) => {
        await api('POST', '/signals', { id: sg.id, value: literal });
        await refresh();
      };
      if (t.simple === 'BOOLEAN') {
        return h('div', { class: 'signal', 'data-signal': sg.id.signal_id }, h('strong', {}, sg.id.signal_id), ' ',
          h('button', { class: 'primary', 'data-approve': sg.id.signal_id, onclick: () => set(literalFromText(t, 'true', sg.id.signal_id)) }, 'Approve'), ' ',
          h('button', { class: 'danger', 'data-reject': sg.id.signal_id, onclick: () => set(literalFromText(t, 'false', sg.id.signal_id)) }, 'Reject'));
      }
      const input = h('input', { 'data-signal-input': sg.id.signal_id, placeholder: typeName(t) });
      const problem = h('span', { class: 'problem' });
      return h('div', { class: 'signal', 'data-signal': sg.id.signal_id }, h('strong', {}, sg.id.signal_id), ` (${typeName(t)}) `, input, ' ',
        h('button', {
          class: 'primary', onclick: () => {
            try { set(literalFromText(t, input.value, sg.id.signal_id)); } catch (e) { problem.textContent = e.message; }
          },
        }, 'Set'), ' ', problem);
    }));
  }

  // The node panel: inputs, outputs, error, attempts and logs, cache, children.
  state.select = async (key, quiet) => {
    state.selected = key;
    state.panelLive = true;
    if (!quiet) state.redraw();
    const ne = state.execs.get(key);
    if (!ne) { replace(panel, h('h2', {}, key), h('p', { class: 'muted' }, 'This node has not run.')); return; }
    const c = ne.closure || {};
    const path = `/${enc(p)}/${enc(d)}/${enc(name)}/${enc(key)}`;
    const [data, tasks] = await Promise.all([
      get('/data/node_executions' + path).catch(() => ({})),
      get('/task_executions' + path + query({ limit: 100 })).catch(() => ({})),
    ]);
    const attempts = tasks.task_executions || [];
    state.attempts.set(key, attempts);
    const tm = c.task_node_metadata || {};
    const cache = tm.cache_status && tm.cache_status !== 'CACHE_DISABLED' ? h('div', { id: 'cache-status' }, h('h3', {}, 'Cache'), tm.cache_status,
      tm.catalog_key && tm.catalog_key.source_task_execution && tm.catalog_key.source_task_execution.node_execution_id
        ? [' · produced by ', execLink(tm.catalog_key.source_task_execution.node_execution_id.execution_id)] : null) : null;
    const wm = c.workflow_node_metadata || {};
    const child = wm.execution_id ? h('div', {}, h('h3', {}, 'Child execution'), execLink(wm.execution_id)) : null;
    // The log shown (and perhaps still streaming) stays across refreshes of the panel.
    if (state.logKey !== key) {
      if (state.logAbort) state.logAbort.abort();
      state.logKey = key;
      state.logView = h('pre', { class: 'log', id: 'log-view', hidden: true });
    }
    const logView = state.logView;
    replace(panel, 
      h('h2', {}, key, ' ', badge(c.phase, 'node-phase')),
      h('div', { class: 'kv' }, h('div', {}, 'kind'), h('div', {}, nodeKind((findSpec(root, key) || {}).spec)),
        h('div', {}, 'started'), h('div', {}, fmtTime(c.started_at)), h('div', {}, 'duration'), h('div', {}, fmtDuration(seconds(c.duration)))),
      errorBox(c.error, 'node-error'),
      cache, child,
      h('h3', {}, 'Inputs'), literalTable(data.full_inputs, 'no inputs'),
      h('h3', {}, 'Outputs'), literalTable(data.full_outputs, TERMINAL.has(c.phase) ? 'no outputs' : 'not yet'),
      attempts.length ? h('h3', {}, 'Attempts') : null,
      attempts.map((te) => {
        const tc = te.closure || {};
        const items = ((tc.metadata || {}).external_resources || []);
        return h('div', { class: 'card', 'data-attempt': te.id.retry_attempt || 0 },
          h('div', { class: 'row' }, h('strong', {}, `attempt ${te.id.retry_attempt || 0}`), badge(tc.phase), h('span', { class: 'muted' }, fmtDuration(seconds(tc.duration)))),
          errorBox(tc.error),
          h('div', { class: 'row' }, (tc.logs || []).map((log) => logButton(log, logView))),
          items.length ? h('details', {}, h('summary', {}, `${items.length} item attempts`), h('table', {}, h('tbody', {}, items.map((res) => h('tr', {},
            h('td', {}, `item ${res.index || 0}`), h('td', {}, `retry ${res.retry_attempt || 0}`), h('td', {}, badge(res.phase)),
            h('td', {}, (res.logs || []).map((log) => logButton(log, logView)))))))) : null);
      }),
      logView);
    drawTimeline();
  };

  function logButton(log, view) {
    return h('button', {
      'data-log': log.name, onclick: () => streamLog(log.uri, view),
    }, log.name || 'log');
  }

  async function streamLog(uri, view) {
    let url;
    try { url = new URL(uri, location.href); } catch (_) { return; }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') { view.hidden = false; view.textContent = `This log is not served over HTTP: ${uri}`; return; }
    // Logs of other systems open as links; this server's are read from it, whatever host
    // name it has for itself.
    if (!url.pathname.startsWith('/logs/')) { window.open(url.href, '_blank', 'noopener'); return; }
    const target = url.pathname + url.search;
    if (state.logAbort) state.logAbort.abort();
    const abort = new AbortController();
    state.logAbort = abort;
    view.hidden = false;
    view.textContent = '';
    view.dataset.streaming = '1';
    try {
      const resp = await fetch(target, { signal: abort.signal, credentials: 'same-origin' });
      if (!resp.ok) { view.textContent = `cannot read the log: ${resp.status} ${await resp.text()}`; return; }
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const atEnd = view.scrollTop + view.clientHeight >= view.scrollHeight - 4;
        view.append(document.createTextNode(dec.decode(value, { stream: true })));
        if (atEnd) view.scrollTop = view.scrollHeight;
      }
      view.dataset.complete = '1';
    } catch (e) {
      if (e.name !== 'AbortError') view.append(`\n[log stream ended: ${e.message}]`);
    } finally {
      view.dataset.streaming = '0';
    }
  }

  await refresh();
  if (selectedNode) await state.select(selectedNode);
  const timer = setInterval(async () => {
    try {
      await refresh();
      if (TERMINAL.has(exec.closure.phase)) {
        clearInterval(timer);
        await refresh();
      }
    } catch (e) { console.warn('refresh failed', e); }
  }, REFRESH_MS);
}

function findSpec(g, key) {
  for (const n of g.nodes) {
    if (n.key === key) return n;
    if (n.child) { const f = findSpec(n.child, key); if (f) return f; }
  }
  return null;
}

// ---- Typed input: text to literal, checked against the type before anything is sent.
function literalFromText(t, text, field) {
  return literalFromValue(t, t.simple && t.simple !== 'STRUCT' ? text : parseJson(text, field), field);
}
function parseJson(text, field) {
  try { return JSON.parse(text); } catch (_) { throw new Error(`${field}: not valid JSON`); }
}
function literalFromValue(t, v, field) {
  const prim = (p) => ({ scalar: { primitive: p } });
  if (t.simple) {
    const str = typeof v === 'string' ? v.trim() : v;
    switch (t.simple) {
      case 'INTEGER':
        if (!/^-?\d+$/.test(String(str))) throw new Error(`${field}: expected an integer, got ${JSON.stringify(v)}`);
        return prim({ integer: String(str) });
      case 'FLOAT':
        if (str === '' || Number.isNaN(Number(str))) throw new Error(`${field}: expected a number, got ${JSON.stringify(v)}`);
        return prim({ float_value: Number(str) });
      case 'STRING': return prim({ string_value: String(v) });
      case 'BOOLEAN': {
        if (v === true || v === 'true') return prim({ boolean: true });
        if (v === false || v === 'false') return prim({ boolean: false });
        throw new Error(`${field}: expected true or false`);
      }
      case 'DATETIME': {
        const ms = Date.parse(str);
        if (Number.isNaN(ms)) throw new Error(`${field}: expected a date and time`);
        return prim({ datetime: new Date(ms).toISOString() });
      }
      case 'DURATION': {
        const sec = Number(String(str).replace(/s$/, ''));
        if (Number.isNaN(sec)) throw new Error(`${field}: expected seconds, e.g. 30s`);
        return prim({ duration: `${sec}s` });
      }
      case 'STRUCT': return { scalar: { generic: v } };
      default: throw new Error(`${field}: ${t.simple} inputs cannot be given here`);
    }
  }
  if (t.collection_type) {
    if (!Array.isArray(v)) throw new Error(`${field}: expected a JSON list`);
    return { collection: { literals: v.map((x, k) => literalFromValue(t.collection_type, x, `${field}[${k}]`)) } };
  }
  if (t.map_value_type) {
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${field}: expected a JSON object`);
    return { map: { literals: Object.fromEntries(Object.entries(v).map(([k, x]) => [k, literalFromValue(t.map_value_type, x, `${field}.${k}`)])) } };
  }
  if (t.blob) {
    if (typeof v !== 'string' || !/^[a-z0-9]+:\/\//.test(v)) throw new Error(`${field}: expected a URI such as s3://bucket/key`);
    return { scalar: { blob: { uri: v, metadata: { type: t.blob } } } };
  }
  if (t.union_type) {
    for (const variant of t.union_type.variants || []) {
      try { return { scalar: { union: { value: literalFromValue(variant, v, field), type: variant } } }; } catch (_) { /* next */ }
    }
    throw new Error(`${field}: fits none of ${typeName(t)}`);
  }
  throw new Error(`${field}: ${typeName(t)} inputs cannot be given here`);
}

// ---- Registry pages.
const KINDS = {
  workflow: { list: 'workflows', ids: 'workflow_ids', api: 'workflows', one: 'workflow', title: 'Workflows' },
  task: { list: 'tasks', ids: 'task_ids', api: 'tasks', one: 'task', title: 'Tasks' },
  launch_plan: { list: 'launchPlans', ids: 'launch_plan_ids', api: 'launch_plans', one: 'launch_plan', title: 'Launch plans' },
};

async function entityList(kind, p, d) {
  const k = KINDS[kind];
  projectCrumbs(p, d, { text: k.title });
  const r = await get(`/${k.ids}/${enc(p)}/${enc(d)}` + query({ limit: 500, 'sort_by.key': 'name', 'sort_by.direction': 'ASCENDING' }));
  render(h('h1', {}, `${p} · ${d}`), domainTabs(p, d, k.list), h('table', { id: 'entities' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Name'))),
    h('tbody', {}, (r.entities || []).map((e) => h('tr', {}, h('td', {}, h('a', { href: `${idPath(p, d)}/${k.list}/${enc(e.name)}` }, e.name)))))));
}

function interfaceTable(iface, title) {
  const vars = Object.entries(((iface || {})[title] || {}).variables || {});
  if (!vars.length) return h('p', { class: 'muted' }, `no ${title}`);
  return h('table', {}, h('tbody', {}, vars.map(([n, v]) => h('tr', {}, h('td', { class: 'mono' }, n), h('td', {}, typeName(v.type)), h('td', { class: 'muted' }, v.description || '')))));
}

async function entityPage(kind, p, d, name, version) {
  const k = KINDS[kind];
  projectCrumbs(p, d, { text: k.title, href: `${idPath(p, d)}/${k.list}` }, { text: name });
  const versions = await get(`/${k.api}/${enc(p)}/${enc(d)}/${enc(name)}` + query({ limit: 50, 'sort_by.key': 'created_at', 'sort_by.direction': 'DESCENDING' }));
  const list = versions[kind === 'launch_plan' ? 'launch_plans' : kind + 's'] || [];
  if (!version && list.length) version = list[0].id.version;
  const entity = version ? await get(`/${k.api}/${enc(p)}/${enc(d)}/${enc(name)}/${enc(version)}`) : null;
  const versionRows = list.map((e) => h('tr', { class: e.id.version === version ? 'selected' : '' },
    h('td', {}, h('a', { href: `${idPath(p, d)}/${k.one}/${enc(name)}/version/${enc(e.id.version)}` }, e.id.version)),
    h('td', {}, fmtTime((e.closure || {}).created_at)),
    kind === 'launch_plan' ? h('td', {}, (e.closure || {}).state || (e.spec || {}).state || '') : null));
  const body = [h('h1', {}, name, ' ', h('span', { class: 'muted mono' }, version || '')),
    h('div', { class: 'row' }, h('a', { href: `${idPath(p, d)}/executions?${new URLSearchParams(kind === 'workflow' ? { workflow: name } : {})}` }, 'Executions')),
    h('h2', {}, 'Versions'), h('table', { id: 'versions' }, h('tbody', {}, versionRows))];
  if (entity && kind === 'workflow') {
    const compiled = entity.closure.compiled_workflow;
    body.push(h('h2', {}, 'Interface'), h('h3', {}, 'Inputs'), interfaceTable(compiled.primary.template.interface, 'inputs'),
      h('h3', {}, 'Outputs'), interfaceTable(compiled.primary.template.interface, 'outputs'), h('h2', {}, 'Graph'));
    const g = attachKeys(templateGraph(compiled.primary), '', 0);
    const state = { execs: new Map(), expanded: new Set(), itemCounts: new Map(), selected: null, select: () => {} };
    body.push(h('div', { class: 'graph-wrap' }, graphSvg(g, state)));
  }
  if (entity && kind === 'task') {
    const t = entity.closure.compiled_task.template;
    body.push(h('div', { class: 'kv card' }, h('div', {}, 'type'), h('div', {}, t.type),
      h('div', {}, 'image'), h('div', { class: 'mono' }, (t.container || {}).image || '—')),
    h('h2', {}, 'Interface'), h('h3', {}, 'Inputs'), interfaceTable(t.interface, 'inputs'), h('h3', {}, 'Outputs'), interfaceTable(t.interface, 'outputs'));
  }
  if (entity && kind === 'launch_plan') {
    body.push(h('div', { class: 'kv card' }, h('div', {}, 'workflow'),
      h('div', {}, h('a', { href: `${idPath(p, d)}/workflow/${enc(entity.spec.workflow_id.name)}/version/${enc(entity.spec.workflow_id.version)}` }, entity.spec.workflow_id.name))),
    launchForm(entity));
  }
  render(...body);
}

function launchForm(lp) {
  const params = ((lp.closure || {}).expected_inputs || {}).parameters || {};
  const fields = Object.entries(params).map(([name, param]) => {
    const t = (param.var || {}).type || {};
    const def = param.default ? literalValue(param.default) : undefined;
    const isText = t.simple && t.simple !== 'STRUCT';
    let input;
    if (t.simple === 'BOOLEAN') {
      input = h('select', { name, 'data-input': name }, ['true', 'false'].map((x) => h('option', { value: x, selected: String(def) === x }, x)));
    } else if (isText) {
      input = h('input', { name, 'data-input': name, value: def === undefined || def === null ? '' : String(def), placeholder: typeName(t) });
    } else {
      input = h('textarea', { name, 'data-input': name, rows: 2, cols: 40, placeholder: `${typeName(t)} as JSON` }, def === undefined ? '' : JSON.stringify(def));
    }
    const problem = h('span', { class: 'problem', 'data-problem': name });
    return { name, t, input, problem, required: param.required && param.default === undefined, el: h('div', { class: 'field' }, h('label', { class: 'mono' }, name), input, h('span', { class: 'hint' }, `${typeName(t)}${param.required ? ', required' : ''}`), problem) };
  });
  const status = h('div', { id: 'launch-status' });
  const form = h('form', {
    id: 'launch-form', class: 'card', onsubmit: async (e) => {
      e.preventDefault();
      const literals = {};
      let bad = false;
      for (const f of fields) {
        f.problem.textContent = '';
        const raw = f.input.value;
        if (raw === '' && !(f.t.simple === 'STRING')) {
          if (f.required) { f.problem.textContent = `${f.name}: required`; bad = true; }
          continue;
        }
        try { literals[f.name] = literalFromText(f.t, raw, f.name); } catch (err) { f.problem.textContent = err.message; bad = true; }
      }
      if (bad) { status.textContent = 'Fix the inputs marked above.'; return; }
      status.textContent = 'Launching…';
      try {
        const r = await api('POST', '/executions', {
          project: lp.id.project, domain: lp.id.domain,
          spec: { launch_plan: lp.id, metadata: { mode: 'MANUAL' } },
          inputs: { literals },
        });
        location.href = `${idPath(r.id.project, r.id.domain)}/executions/${enc(r.id.name)}`;
      } catch (err) { replace(status, h('div', { class: 'error' }, err.message)); }
    },
  }, h('h2', {}, 'Launch'), fields.map((f) => f.el), h('button', { class: 'primary', type: 'submit', id: 'launch' }, 'Launch'), status);
  return form;
}

// ---- Routing over Flyte's console paths.
async function route() {
  const path = decodeURI(location.pathname).replace(/\/+$/, '');
  const parts = path.split('/').slice(2).map((x) => x);
  const [projects, p, domains, d, section, name, ...rest] = parts;
  if (!parts.length || parts[0] === 'select-project' || (projects === 'projects' && !p)) return projectsPage();
  if (projects !== 'projects') return render(h('p', {}, 'No such page.'));
  if (!domains) { location.replace(`${idPath(p, 'development')}/executions`); return undefined; }
  if (!section || section === 'executions' && !name) return executionsPage(p, d);
  if (section === 'executions') return executionPage(p, d, name, rest[0] === 'nodeId' ? rest[1] : null);
  const kindOf = { workflows: 'workflow', workflow: 'workflow', tasks: 'task', task: 'task', launchPlans: 'launch_plan', launch_plans: 'launch_plan', launch_plan: 'launch_plan' };
  const kind = kindOf[section];
  if (!kind) return render(h('p', {}, 'No such page.'));
  if (!name) return entityList(kind, p, d);
  return entityPage(kind, p, d, name, rest[0] === 'version' ? rest[1] : undefined);
}

route().catch((e) => {
  render(h('div', { class: 'error', id: 'page-error' }, `This page could not be loaded: ${e.message}`));
  if (e.status === 401) showLogin();
});
