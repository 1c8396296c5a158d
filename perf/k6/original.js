// The original project's load test: 10 virtual users, each iteration a
// GET /health and a POST /predict; 95% of posts repeat three fixed sentences,
// 5% post ten sentences in shuffled order. Pass mark: p99 < 2 s.
// Stage lengths and the cache rate come from the environment (defaults: the
// original's 30 s ramp-up, 7 min hold, 3 min ramp-down, 0.95).
import { health, originalTexts, predict, rampHoldDown, thresholds } from './lib.js';

export const options = {
  stages: rampHoldDown('30s', '7m', '3m'),
  thresholds: thresholds(2000),
};

const CACHE_RATE = parseFloat(__ENV.CACHE_RATE || '0.95');

export default function () {
  health();
  predict(originalTexts(CACHE_RATE));
}
