// A 50% cache rate that no cache design can game: half the posts repeat the
// three fixed sentences, half post ten never-seen SST-2 sentences. Same
// shape as the original profile (GET /health + POST /predict per iteration).
import { FIXED, health, loadSentences, predict, thresholds, unseen } from './lib.js';

const SENTENCES = loadSentences();
const VUS = parseInt(__ENV.VUS || '10', 10);
export const options = {
  stages: [
    { duration: __ENV.RAMP || '10s', target: VUS },
    { duration: __ENV.HOLD || '60s', target: VUS },
    { duration: __ENV.DOWN || '10s', target: 0 },
  ],
  thresholds: thresholds(2000),
};

const CACHE_RATE = parseFloat(__ENV.CACHE_RATE || '0.5');

export default function () {
  health();
  predict(Math.random() > CACHE_RATE ? unseen(SENTENCES, 10) : FIXED);
}
