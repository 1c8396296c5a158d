// Every request: one SST-2 sentence never sent before (a unique marker), so
// no cache can answer it: the model path alone. VUS users, closed loop.
import { loadSentences, predict, thresholds, unseen } from './lib.js';

const SENTENCES = loadSentences();
export const options = {
  vus: parseInt(__ENV.VUS || '10', 10),
  duration: __ENV.DURATION || '60s',
  thresholds: thresholds(2000),
};

export default function () {
  predict(unseen(SENTENCES, 1));
}
