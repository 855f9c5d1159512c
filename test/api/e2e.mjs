// End-to-end check of smsq's HTTP API from a client not written in Go:
// Node's own fetch against a real worker process and a real Redis. Every
// exchange is written to $SMSQ_EXCHANGES (JSON Lines) so that the Go side
// checks each answer against the OpenAPI document.
//
// Environment: SMSQ_API_URL, SMSQ_API_SECRET, SMSQ_EXCHANGES, SMSQ_RUN (a
// unique suffix for idempotency keys).
import { appendFileSync } from 'node:fs';

const base = process.env.SMSQ_API_URL;
const secret = process.env.SMSQ_API_SECRET;
const log = process.env.SMSQ_EXCHANGES;
const run = process.env.SMSQ_RUN || String(Date.now());
const failures = [];

function check(cond, what) {
  if (!cond) failures.push(what);
  return cond;
}

async function call(method, path, { body, type, key, auth = secret, headers = {} } = {}) {
  const h = { ...headers };
  if (auth) h['Authorization'] = `Bearer ${auth}`;
  if (type) h['Content-Type'] = type;
  if (key) h['Idempotency-Key'] = key;
  const res = await fetch(base + path, { method, headers: h, body });
  const text = await res.text();
  const hdrs = {};
  res.headers.forEach((v, k) => { hdrs[k] = v; });
  appendFileSync(log, JSON.stringify({ method, path, status: res.status, headers: hdrs, body: text }) + '\n');
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, text, json };
}

const json = 'application/json';
const login = (phone, extra = {}) => JSON.stringify({ channel: 'CHANNEL_LOGIN', phoneNumber: phone, ...extra });
const phoneA = '+8613800138000';
const phoneB = '+8613900139000';
const key = `node-${run}`;

// The document, without a key.
let r = await call('GET', '/v1/openapi.json', { auth: null });
check(r.status === 200 && r.json && r.json.openapi === '3.1.0', `openapi.json: ${r.status}`);

// A bad key, and none.
r = await call('POST', '/v1/sms', { body: login(phoneA), type: json, auth: 'not-a-key-of-this-server' });
check(r.status === 401 && r.headers.get('content-type') === 'application/problem+json', `bad key: ${r.status} ${r.text}`);
r = await call('POST', '/v1/sms', { body: login(phoneA), type: json, auth: null });
check(r.status === 401, `no key: ${r.status}`);

// Bad input: the field is named, the phone masked, nothing queued.
r = await call('POST', '/v1/sms', { body: login('+86 139 0013 900'), type: json });
check(r.status === 400 && r.json.field === 'phoneNumber' && r.json.detail.startsWith('phoneNumber'), `bad phone: ${r.status} ${r.text}`);
r = await call('POST', '/v1/sms', { body: JSON.stringify({ channel: 'CHANNEL_NOPE', phoneNumber: phoneA }), type: json });
check(r.status === 400 && r.json.field === 'channel', `bad channel: ${r.status} ${r.text}`);
r = await call('POST', '/v1/sms', { body: '{"channel":', type: json });
check(r.status === 400 && r.json.type === 'urn:smsq:problem:invalid-request', `broken JSON: ${r.status} ${r.text}`);
r = await call('POST', '/v1/sms', { body: login(phoneA), type: 'text/plain' });
check(r.status === 415, `text/plain: ${r.status}`);
r = await call('POST', '/v1/sms', { body: login(phoneA, { pad: 'x'.repeat(20000) }), type: json });
check(r.status === 413, `too large: ${r.status}`);

// Send, with an idempotency key; unknown fields are ignored.
r = await call('POST', '/v1/sms', { body: login(phoneA, { clientIp: '203.0.113.7', comment: 'ignored' }), type: json, key: `"${key}"` });
const first = r;
check(r.status === 202 && r.json.id === key && r.json.status === 'queued' && r.json.queue === 'critical'
  && r.json.phone === '+86 138****8000', `send: ${r.status} ${r.text}`);

// The same key and request again: the first answer, nothing new.
r = await call('POST', '/v1/sms', { body: login(phoneA, { clientIp: '203.0.113.7' }), type: json, key });
check(r.status === 202 && r.text === first.text && r.headers.get('idempotent-replayed') === 'true', `duplicate: ${r.status} ${r.text}`);

// The same key, another request: 422.
r = await call('POST', '/v1/sms', { body: login(phoneB), type: json, key });
check(r.status === 422 && r.json.type === 'urn:smsq:problem:idempotency-key-reused', `conflict: ${r.status} ${r.text}`);

// Wait for the outcome of the first task.
r = await call('GET', `/v1/sms/${encodeURIComponent(key)}?wait=20s`);
check(r.status === 200 && r.json.final === true && r.json.state === 'sent' && r.json.event && r.json.event.v === 1
  && r.json.event.taskId === key && r.json.event.phone === '+86 138****8000', `outcome: ${r.status} ${r.text}`);

// Send and wait in one request.
r = await call('POST', '/v1/sms?wait=20s', { body: login(phoneB), type: json, key: `${key}-wait` });
check(r.status === 202 && r.json.outcome && r.json.outcome.final === true && r.json.outcome.state === 'sent',
  `send and wait: ${r.status} ${r.text}`);

// An unknown task.
r = await call('GET', `/v1/sms/none-${run}`);
check(r.status === 404, `unknown task: ${r.status}`);

// A batch: results in input order, with enqueue batch's statuses.
const lines = [
  JSON.stringify({ channel: 'CHANNEL_REGISTER', phoneNumber: phoneA, idempotencyKey: `${key}-b1` }),
  JSON.stringify({ channel: 'CHANNEL_NOPE', phoneNumber: phoneA }),
  JSON.stringify({ channel: 'CHANNEL_LOGIN', phoneNumber: phoneA, idempotencyKey: key }),
  'not json',
].join('\n') + '\n';
r = await call('POST', '/v1/sms/batch', { body: lines, type: 'application/jsonl' });
const results = r.text.trim().split('\n').map((l) => JSON.parse(l));
check(r.status === 200 && results.map((x) => `${x.line}:${x.status}`).join(' ') === '1:enqueued 2:invalid 3:duplicate 4:invalid',
  `batch: ${r.status} ${r.text}`);

// The code was used: a conversion report for the abuse guard.
r = await call('POST', '/v1/verifications', { body: JSON.stringify({ phoneNumber: phoneA, channel: 'CHANNEL_LOGIN' }), type: json });
check(r.status === 202 && r.json.status === 'recorded' && r.json.channel === 'CHANNEL_LOGIN' && r.json.phone === '+86 138****8000',
  `verification: ${r.status} ${r.text}`);
r = await call('POST', '/v1/verifications', { body: JSON.stringify({ phoneNumber: phoneA, channel: 'CHANNEL_NOPE' }), type: json });
check(r.status === 400 && r.json.field === 'channel', `bad verification: ${r.status} ${r.text}`);

if (failures.length > 0) {
  console.error(`FAIL: ${failures.length} checks failed`);
  for (const f of failures) console.error('  ' + f);
  process.exit(1);
}
console.log('e2e: all checks passed');
