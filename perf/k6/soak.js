// The original profile held for a long time (DURATION, default 30 min) at 10
// users: latency must not drift and memory must not grow.
import { health, predict, thresholds } from './lib.js';

export const options = {
  vus: parseInt(__ENV.VUS || '10', 10),
  duration: __ENV.DURATION || '30m',
  thresholds: thresholds(2000),
};

const CACHE_RATE = parseFloat(__ENV.CACHE_RATE || '0.95');
const FIXED = ['I love you!', 'I hate you!', 'I am a Kubernetes Cluster!'];
const OTHERS = [
  'I ran to the store',
  'The students are very good in this class',
  'Working on Saturday morning is brutal',
  'Food is very tasty',
  'Welcome to the thunderdome',
];

export default function () {
  health();
  const texts = Math.random() > CACHE_RATE ? [...FIXED, ...OTHERS].sort(() => Math.random() - 0.5) : FIXED;
  predict(texts);
}
