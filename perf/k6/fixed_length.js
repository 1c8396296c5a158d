// Cache misses of one length: each request one never-seen text of about
// TOKENS tokens (make bench's throughput-against-length plot). VUS users.
import { loadSentences, predict, textOfTokens, thresholds } from './lib.js';

const SENTENCES = loadSentences();
const TOKENS = parseInt(__ENV.TOKENS || '32', 10);
export const options = {
  vus: parseInt(__ENV.VUS || '10', 10),
  duration: __ENV.DURATION || '20s',
  thresholds: thresholds(20000),
};

export default function () {
  predict([textOfTokens(SENTENCES, TOKENS, __VU * 100000 + __ITER)]);
}
