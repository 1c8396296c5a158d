// A 50% cache rate that no cache design can game: half the posts repeat the
// three fixed sentences, half post ten never-seen SST-2 sentences. Same
// shape as the original profile (GET /health + POST /predict per iteration).
import { FIXED, health, loadSentences, predict, rampHoldDown, thresholds, unseen } from './lib.js';

const SENTENCES = loadSentences();
export const options = {
  stages: rampHoldDown('10s', '60s', '10s'),
  thresholds: thresholds(2000),
};

const CACHE_RATE = parseFloat(__ENV.CACHE_RATE || '0.5');

export default function () {
  health();
  // tag `texts`: the report's miss tail is the `new` requests' alone
  if (Math.random() > CACHE_RATE) {
    predict(unseen(SENTENCES, 10), { texts: 'new' });
  } else {
    predict(FIXED, { texts: 'fixed' });
  }
}
