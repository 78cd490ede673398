// The nvr health page: polls the documented endpoints every two seconds and
// draws the floor plan from the live feed (/api/v1/spatial/live, server-sent
// events). With api.token set, open the page as /?token=<token> once; the
// token is kept in this browser's local storage.
'use strict';

const params = new URLSearchParams(location.search);
const token = params.get('token') || localStorage.getItem('nvr-token') || '';
if (params.get('token')) localStorage.setItem('nvr-token', token);
const query = token ? '?token=' + encodeURIComponent(token) : '';
const POLL_MS = 2000;
const TRAIL = 50; // positions kept per identity (10 s at 5 cycles/s)

// State the page keeps; exposed for people poking at it in the console.
const nvr = window.nvr = {
  polls: 0, cycles: 0, handoffs: 0, errors: 0,
  floors: {},        // floor id -> {size_m, bounds, svg}
  shards: {},        // shard -> latest tracks of that shard
  trails: new Map(), // global id -> [[x, y], ...]
  firstPollMs: null, firstTracksMs: null,
  draws: [],         // [ms since navigation, identities drawn] of the first draws
  lastEventBytes: 0,
};

function el(tag, attrs, ...children) {
  const ns = ['svg', 'g', 'circle', 'polyline', 'text', 'rect', 'line'].includes(tag)
    ? 'http://www.w3.org/2000/svg' : null;
  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function getJSON(path) {
  const r = await fetch(path, { headers: token ? { Authorization: 'Bearer ' + token } : {} });
  if (r.status === 401) throw new Error('this server needs the API token: open /?token=<api.token>');
  if (!r.ok && r.status !== 503) throw new Error(path + ': HTTP ' + r.status);
  return r.json();
}

const num = (v, digits = 1) => (v === null || v === undefined || Number.isNaN(v)) ? '–'
  : Number(v).toLocaleString(undefined, { maximumFractionDigits: digits });
function bytes(b) {
  if (b === null || b === undefined) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return num(b, 1) + ' ' + u[i];
}
const measured = (v, unit) => (v === null || v === undefined) ? 'measuring…' : num(v) + unit;
const time = (s) => s > 0 ? new Date(s * 1000).toLocaleTimeString() : '–';

function dl(target, pairs) {
  const d = document.getElementById(target);
  d.replaceChildren(...pairs.flatMap(([k, v]) => d.classList.contains('inline')
    ? [el('div', {}, el('dt', {}, k), el('dd', {}, v))]
    : [el('dt', {}, k), el('dd', {}, v)]));
}

function rows(target, list, cells, attrs) {
  const body = document.querySelector('#' + target + ' tbody');
  body.replaceChildren(...list.map((x) => el('tr', attrs ? attrs(x) : {},
    ...cells(x).map((c) => c instanceof Node ? el('td', {}, c) : el('td', {}, c)))));
}

function renderStatus(h) {
  const s = document.getElementById('status');
  s.textContent = h.status;
  s.dataset.status = h.status;
  document.getElementById('version').textContent = 'v' + h.version + ' · up ' + num(h.uptime_s / 60, 0) + ' min';
  document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  document.getElementById('reasons').replaceChildren(...(h.reasons || []).map((r) => el('li', {}, r)));
}

function renderScaling(list) {
  rows('scaling', list || [], (r) => {
    const verdict = r.value === null ? 'not known yet' : r.over ? 'SCALE' : 'ok';
    return [r.service, r.indicator, r.threshold,
      r.value === null ? '–' : num(r.value, 2) + ' ' + r.unit, verdict, r.over ? r.advice : ''];
  }, (r) => ({ class: r.over ? 'over' : '', 'data-indicator': r.indicator, 'data-over': String(r.over) }));
  for (const tr of document.querySelectorAll('#scaling tbody tr')) {
    const td = tr.children[4];
    td.className = td.textContent === 'ok' ? 'verdict-ok' : td.textContent === 'SCALE' ? '' : 'verdict-unknown';
  }
}

function renderSystem(h) {
  const m = h.machine || {};
  dl('machine', [
    ['Cores', num(m.cores, 0)],
    ['CPU (1 min)', measured(m.cpu_1m_pct, ' %')],
    ['This process', measured(m.process_cpu_pct, ' % of a core')],
    ['Memory', num(m.rss_mb) + ' MiB' + (m.memory_growth_mb_per_h === null || m.memory_growth_mb_per_h === undefined
      ? '' : ' (' + num(m.memory_growth_mb_per_h) + ' MiB/h)')],
    ['GPU (1 min)', m.gpu_1m_pct === null || m.gpu_1m_pct === undefined ? 'no nvidia-smi' : num(m.gpu_1m_pct) + ' %'],
  ]);
  const n = h.nats || {};
  dl('nats', [
    ['Connected', n.connected ? 'yes' : 'NO'],
    ['Server', (n.server_name || '') + ' ' + (n.server_version || '')],
    ['JetStream', n.jetstream ? 'on' : 'off'],
    ['URL', n.url + (n.embedded ? ' (embedded)' : '')],
    ['Reconnects', num(n.reconnects, 0)],
  ]);
  const streams = Object.entries(n.streams || {});
  rows('streams', streams, ([name, s]) => [name, num(s.messages, 0), bytes(s.bytes),
    time(s.first_unix_s), time(s.last_unix_s)]);
}

function renderDetection(d) {
  dl('detection-summary', [
    ['Connected', d.connected ? 'yes' : 'no'],
    ['Rate', num(d.fps) + ' fps'],
    ['Latency avg / p50 / p99', num(d.avg_latency_ms) + ' / ' + num(d.p50_latency_ms) + ' / ' + num(d.p99_latency_ms) + ' ms'],
    ['Queue', num(d.queue_size, 0)],
    ['Processed', num(d.processed_count, 0)],
    ['Skipped', num(d.skipped_count, 0)],
    ['Errors', num(d.error_count, 0)],
  ]);
  rows('detection-nodes', d.nodes || [], (n) => {
    const l = n.layout || {};
    return [n.node, n.backend + (n.fallback_reason ? ' (fallback)' : ''), num(n.workers, 0), num(l.batch, 0),
      l.capacity_fps ? num(l.capacity_fps) + ' fps ≈ ' + num(l.capacity_cameras) + ' cameras' : '–',
      num(n.memory_mb) + ' MiB'];
  });
}

function renderSpatial(s) {
  dl('spatial-summary', [
    ['Active', num(s.active_tracks, 0)],
    ['Lost (re-ID)', num(s.lost_tracks, 0)],
    ['Static', num(s.static_tracks, 0)],
    ['Duplicate views', num(s.duplicate_tracks, 0)],
    ['Cycle avg / p99', num(s.avg_processing_ms, 2) + ' / ' + num(s.p99_processing_ms, 2) + ' ms'],
    ['Handoffs', num(s.handoffs_completed, 0) + ' (' + num(s.handoff_failure_rate_pct) + ' % failed)'],
    ['Memory', num(s.memory_usage_mb) + ' MiB'],
  ]);
  rows('shards', s.shards || [], (sh) => [sh.shard, sh.node, (sh.cameras || []).join(', '),
    num(sh.active_tracks, 0), num(sh.lost_tracks, 0),
    num(sh.avg_processing_ms, 2) + ' / ' + num(sh.p99_processing_ms, 2) + ' ms',
    num(sh.handoffs_completed, 0)]);
}

// Camera cards: state and rates from the health document, and the latest
// frame with its tracks drawn, reloaded once the previous one arrived.
const cameraCards = new Map();
function renderCameras(list) {
  const box = document.getElementById('cameras');
  for (const c of list || []) {
    let card = cameraCards.get(c.id);
    if (!card) {
      const img = el('img', { alt: 'latest frame of ' + c.id, 'data-camera': c.id });
      card = { root: el('div', { class: 'camera', 'data-camera': c.id }), img, info: el('div', {}), loaded: 0 };
      card.root.append(el('div', { class: 'name' }, c.id), card.img, card.info);
      box.append(card.root);
      cameraCards.set(c.id, card);
      if (c.state !== 'external') {
        img.onload = () => { card.loaded++; img.dataset.loaded = card.loaded; setTimeout(() => reload(c.id), POLL_MS); };
        img.onerror = () => setTimeout(() => reload(c.id), POLL_MS * 2);
        reload(c.id);
      } else {
        img.replaceWith(el('p', { class: 'muted' }, 'detections arrive from outside; no video here'));
      }
    }
    const t = c.tracking || {};
    card.info.replaceChildren(
      el('span', { class: 'state-' + c.state }, c.state), ' · ',
      num(c.fps_in) + ' fps in · ' + num(c.fps_out) + ' fps out · ' + num(t.active_tracks, 0) + ' tracks',
      ...(c.last_error ? [el('div', { class: 'err' }, c.last_error)] : []));
  }
}
function reload(id) {
  const card = cameraCards.get(id);
  const sep = query ? '&' : '?';
  card.img.src = '/api/v1/cameras/' + encodeURIComponent(id) + '/latest.jpg' + query + sep + 't=' + Date.now();
}

async function poll() {
  try {
    const [h, d, s] = await Promise.all([
      getJSON('/api/v1/system/health'),
      getJSON('/api/v1/plugins/nvr-detection/status'),
      getJSON('/api/v1/spatial/stats'),
    ]);
    renderStatus(h);
    renderScaling(h.scaling);
    renderSystem(h);
    renderDetection(d);
    renderSpatial(s);
    renderCameras((h.components || {}).cameras);
    nvr.polls++;
    if (nvr.firstPollMs === null) nvr.firstPollMs = performance.now();
  } catch (e) {
    nvr.errors++;
    const s = document.getElementById('status');
    s.textContent = String(e.message || e);
    s.dataset.status = 'error';
  }
  setTimeout(poll, POLL_MS);
}

// Floor plan: one SVG per floor in floor metres. A floor without a size
// grows to what has been seen on it.
async function loadFloors() {
  const f = await getJSON('/api/v1/floors');
  const box = document.getElementById('floors');
  box.replaceChildren();
  for (const fl of f.floors) addFloor(fl.id, fl.size_m, fl.cameras);
  if (!f.floors.length) box.append(el('p', { class: 'muted' }, 'no floors configured'));
}
function addFloor(id, size, cameras) {
  const known = size && size[0] > 0 && size[1] > 0;
  const svg = el('svg', { 'data-floor': id, preserveAspectRatio: 'xMidYMid meet' });
  const grid = el('g', {});
  const layer = el('g', { class: 'tracks' });
  svg.append(grid, layer);
  const root = el('div', { class: 'floor' },
    el('h3', {}, 'Floor ' + id + ' ', el('small', { class: 'muted' }, (cameras || []).join(', '))), svg);
  document.getElementById('floors').append(root);
  const fl = nvr.floors[id] = {
    svg, grid, layer, fixed: known,
    bounds: known ? [0, 0, size[0], size[1]] : [0, 0, 1, 1],
  };
  drawGrid(fl);
  return fl;
}
function drawGrid(fl) {
  const [x0, y0, x1, y1] = fl.bounds;
  const pad = 0.5;
  fl.svg.setAttribute('viewBox', [x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad].join(' '));
  const lines = [];
  for (let x = Math.ceil(x0); x <= x1; x++) lines.push(el('line', { class: 'gridline', x1: x, y1: y0, x2: x, y2: y1 }));
  for (let y = Math.ceil(y0); y <= y1; y++) lines.push(el('line', { class: 'gridline', x1: x0, y1: y, x2: x1, y2: y }));
  fl.grid.replaceChildren(...lines, el('rect', { class: 'bounds', x: x0, y: y0, width: x1 - x0, height: y1 - y0 }));
}

let drawPending = false;
function scheduleDraw() {
  if (!drawPending) { drawPending = true; requestAnimationFrame(drawFloors); }
}
function drawFloors() {
  drawPending = false;
  const byFloor = {};
  for (const tracks of Object.values(nvr.shards)) {
    for (const t of tracks) {
      if (t.state === 'lost' || t.state === 'duplicate') continue;
      (byFloor[t.floor] = byFloor[t.floor] || []).push(t);
    }
  }
  for (const [floor, tracks] of Object.entries(byFloor)) {
    const fl = nvr.floors[floor] || addFloor(floor, null, []);
    if (!fl.fixed) {
      let [x0, y0, x1, y1] = fl.bounds;
      for (const t of tracks) { x0 = Math.min(x0, Math.floor(t.x)); y0 = Math.min(y0, Math.floor(t.y)); x1 = Math.max(x1, Math.ceil(t.x)); y1 = Math.max(y1, Math.ceil(t.y)); }
      if ([x0, y0, x1, y1].join() !== fl.bounds.join()) { fl.bounds = [x0, y0, x1, y1]; drawGrid(fl); }
    }
    const seen = new Set();
    for (const t of tracks) {
      seen.add(String(t.id));
      let g = fl.layer.querySelector('g.track[data-id="' + t.id + '"]');
      if (!g) {
        g = el('g', { class: 'track', 'data-id': t.id },
          el('polyline', {}), el('circle', { r: 0.25 }), el('text', { dx: 0.3, dy: -0.3 }, '#' + t.id));
        fl.layer.append(g);
      }
      g.dataset.state = t.state;
      g.dataset.cameras = t.cameras.join(',');
      const trail = nvr.trails.get(t.id) || [];
      trail.push([t.x, t.y]);
      if (trail.length > TRAIL) trail.shift();
      nvr.trails.set(t.id, trail);
      g.children[0].setAttribute('points', trail.map((p) => p.join(',')).join(' '));
      g.children[1].setAttribute('cx', t.x);
      g.children[1].setAttribute('cy', t.y);
      g.children[2].setAttribute('x', t.x);
      g.children[2].setAttribute('y', t.y);
    }
    for (const g of [...fl.layer.children]) if (!seen.has(g.dataset.id)) g.remove();
  }
  for (const [id, fl] of Object.entries(nvr.floors)) if (!byFloor[id]) fl.layer.replaceChildren();
  if (nvr.draws.length < 100) {
    nvr.draws.push([performance.now(), Object.values(byFloor).reduce((n, t) => n + t.length, 0)]);
  }
}

// Browsers allow six connections per server; a page kept in the back/forward
// cache must not hold one with its live feed.
let live = null;
window.addEventListener('pagehide', () => { if (live) { live.close(); live = null; } });
window.addEventListener('pageshow', (e) => { if (e.persisted && !live) connectLive(); });

function connectLive() {
  const es = live = new EventSource('/api/v1/spatial/live' + query);
  es.addEventListener('tracks', (ev) => {
    const m = JSON.parse(ev.data);
    nvr.lastEventBytes = ev.data.length;
    nvr.shards[m.shard] = m.tracks;
    nvr.cycles++;
    if (nvr.firstTracksMs === null && m.tracks.length) nvr.firstTracksMs = performance.now();
    scheduleDraw();
  });
  es.addEventListener('handoff', (ev) => {
    const h = JSON.parse(ev.data);
    nvr.handoffs++;
    const log = document.getElementById('handoffs');
    const gap = h.gap_ms !== null && h.gap_ms !== undefined ? ' (gap ' + num(h.gap_ms / 1000) + ' s)' : '';
    log.prepend(el('li', { 'data-id': h.global_id }, new Date(h.ts_ns / 1e6).toLocaleTimeString() + ' #' + h.global_id
      + ' ' + (h.from_camera || '?') + ' → ' + (h.to_camera || '?') + gap));
    while (log.children.length > 20) log.lastChild.remove();
    for (const g of document.querySelectorAll('g.track[data-id="' + h.global_id + '"]')) {
      g.classList.remove('flash');
      void g.getBoundingClientRect();
      g.classList.add('flash');
      setTimeout(() => g.classList.remove('flash'), 1500);
    }
  });
  es.onerror = () => { nvr.errors++; };
}

loadFloors().catch(() => {}).finally(connectLive);
poll();
