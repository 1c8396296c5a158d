// Shared by the k6 profiles: target, cache and timing headers as metrics.
import { check } from 'k6';
import http from 'k6/http';
import { Counter, Rate, Trend } from 'k6/metrics';

export const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
// PROTOCOL=v2: the target is a peer server speaking the Open Inference (v2)
// protocol, as its users call it (MLServer's Hugging Face runtime: a BYTES
// input named array_inputs, one JSON output per text); otherwise POST /predict.
const V2 = __ENV.PROTOCOL === 'v2';
const V2_MODEL = __ENV.V2_MODEL || 'sst2';

// Request-level cache result: our proxy says X-Cache: hit|partial|miss, the
// original design X-MLAPI-Cache: Hit|Miss.
const cacheHit = new Rate('cache_hit');
const proxyTotal = new Trend('proxy_total_ms', true);
const inference = new Trend('inference_ms', true);
// RECORD_MODEL=1: one sample per answer, tagged with the model that made it
// and when the request was sent (tests/deploy/test_rollout.py reads them).
const RECORD_MODEL = __ENV.RECORD_MODEL === '1';
const modelAnswers = new Counter('model_answers');

// ADDRESS_PER_VU=1: each VU is a user of its own, as behind the ingress (the
// proxy trusts 127.0.0.1's X-Forwarded-For): 10.0.<VU / 256>.<VU % 256>.
// Otherwise every VU is one client address, as users behind one NAT.
const ADDRESS_PER_VU = __ENV.ADDRESS_PER_VU === '1';

function clientHeaders() {
  const headers = { 'Content-Type': 'application/json' };
  if (ADDRESS_PER_VU) {
    headers['X-Forwarded-For'] = `10.0.${Math.floor(__VU / 256)}.${__VU % 256}`;
  }
  return headers;
}

export function health() {
  const path = V2 ? '/v2/health/ready' : '/health';
  const res = http.get(`${BASE_URL}${path}`, { tags: { name: 'health' } });
  check(res, { 'health 200': (r) => r.status === 200 });
}

function predictV2(texts, tags) {
  const body = { inputs: [{ name: 'array_inputs', shape: [texts.length], datatype: 'BYTES', data: texts }] };
  const res = http.post(`${BASE_URL}/v2/models/${V2_MODEL}/infer`, JSON.stringify(body), {
    headers: { 'Content-Type': 'application/json' },
    tags: { name: 'predict', ...tags },
  });
  check(res, {
    'predict 200': (r) => r.status === 200,
    'one prediction per text': (r) => r.status === 200 && r.json('outputs.0.data').length === texts.length,
  });
  return res;
}

// `tags`: more k6 tags on the request (the mixed-length profile's length class).
export function predict(texts, tags = {}) {
  if (V2) {
    return predictV2(texts, tags);
  }
  const sent = Date.now();
  // The original script sent no Content-Type; today's FastAPI answers such a
  // body with 422, so both systems get the header (ours does not need it).
  const res = http.post(`${BASE_URL}/predict`, JSON.stringify({ text: texts }), {
    headers: clientHeaders(),
    tags: { name: 'predict', ...tags },
  });
  check(res, {
    'predict 200': (r) => r.status === 200,
    'one prediction per text': (r) => r.status === 200 && r.json('predictions').length === texts.length,
  });
  if (RECORD_MODEL) {
    const fingerprint = res.headers['X-Model-Fingerprint'] || 'none';
    modelAnswers.add(1, { fingerprint, sent: String(sent), status: String(res.status) });
  }
  const ours = res.headers['X-Cache'];
  const theirs = res.headers['X-Mlapi-Cache'];
  if (ours !== undefined || theirs !== undefined) {
    cacheHit.add(ours === 'hit' || theirs === 'Hit');
  }
  if (res.headers['X-Total-Time'] !== undefined) {
    proxyTotal.add(parseFloat(res.headers['X-Total-Time']));
    inference.add(parseFloat(res.headers['X-Inference-Time']));
  }
  return res;
}

// Never-seen texts: SST-2 sentences (a JSON list written by the runner from
// ../shared/data/sst2/train.tsv) with a unique marker.
export function loadSentences() {
  return JSON.parse(open(__ENV.SST2_FILE || './sst2-sentences.json'));
}

// n random SST-2 sentences no cache has seen: each gets a marker unique per
// VU, iteration and text (n <= 10, VUs < 100, iterations < 100,000), one
// number of about 4 WordPiece tokens. Markers repeat across runs: flush the
// proxy's Redis first (make bench does; the cache_hit rate shows repeats).
// A UUID-style marker cost 19 tokens, more than the 14 of an average
// sentence, so the model did 2.3x the work of real SST-2 texts.
export function unseen(sentences, n) {
  const texts = [];
  const base = (__VU * 100000 + __ITER) * 10;
  for (let i = 0; i < n; i++) {
    const sentence = sentences[Math.floor(Math.random() * sentences.length)];
    texts.push(`${sentence} #${base + i}`);
  }
  return texts;
}

// Ramp up to VUS users, hold, ramp down; each stage's length from RAMP, HOLD,
// DOWN in the environment, else the profile's defaults.
export function rampHoldDown(ramp, hold, down) {
  const vus = parseInt(__ENV.VUS || '10', 10);
  return [
    { duration: __ENV.RAMP || ramp, target: vus },
    { duration: __ENV.HOLD || hold, target: vus },
    { duration: __ENV.DOWN || down, target: 0 },
  ];
}

export function thresholds(p99ms) {
  return {
    http_req_failed: [`rate<=${__ENV.MAX_FAILED_RATE || '0'}`],
    'http_req_duration{name:predict}': [`p(99)<${__ENV.P99_MS || p99ms}`],
  };
}

// The original project's texts: 95% of its posts (by default) sent the three
// fixed sentences, the rest the ten sentences in shuffled order.
export const FIXED = ['I love you!', 'I hate you!', 'I am a Kubernetes Cluster!'];
const SHUFFLED = [
  ...FIXED,
  'I ran to the store',
  'The students are very good in this class',
  'Working on Saturday morning is brutal',
  'How much wood could a wood chuck chuck if a wood chuck could chuck wood?',
  'A Wood chuck would chuck as much wood as a wood chuck could chuck if a woodchuck could chuck wood ',
  'Food is very tasty',
  'Welcome to the thunderdome',
];

function shuffled(values) {
  return values
    .map((value) => ({ value, sort: Math.random() }))
    .sort((a, b) => a.sort - b.sort)
    .map(({ value }) => value);
}

export function originalTexts(cacheRate) {
  return Math.random() > cacheRate ? shuffled(SHUFFLED) : FIXED;
}

// A text of about `tokens` WordPiece tokens made of SST-2 sentences (about
// 1.3 tokens per word), with a unique marker so no cache can answer it.
export function textOfTokens(sentences, tokens, marker) {
  const words = [`#${marker}`];
  const target = Math.max(1, Math.round(tokens / 1.3));
  while (words.length < target) {
    const sentence = sentences[Math.floor(Math.random() * sentences.length)];
    words.push(...sentence.split(' '));
  }
  return words.slice(0, target).join(' ');
}
