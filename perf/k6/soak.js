// The original profile held for a long time (DURATION, default 30 min) at 10
// users: latency must not drift and memory must not grow.
import { health, originalTexts, predict, thresholds } from './lib.js';

export const options = {
  vus: parseInt(__ENV.VUS || '10', 10),
  duration: __ENV.DURATION || '30m',
  thresholds: thresholds(2000),
};

const CACHE_RATE = parseFloat(__ENV.CACHE_RATE || '0.95');

export default function () {
  health();
  predict(originalTexts(CACHE_RATE));
}
