// Cache misses of realistic mixed lengths: each request one never-seen text
// whose length is drawn log-uniformly from 4 to 400 tokens (short phrases to
// long reviews, median about 40). VUS users, closed loop.
import { loadSentences, predict, textOfTokens, thresholds } from './lib.js';

const SENTENCES = loadSentences();
export const options = {
  vus: parseInt(__ENV.VUS || '10', 10),
  duration: __ENV.DURATION || '60s',
  thresholds: thresholds(5000),
};

// Length classes for the report (tag `tokens`): each a factor of about 4.
const CLASSES = [[4, 15], [16, 63], [64, 255], [256, 400]];

export default function () {
  const tokens = Math.round(Math.exp(Math.log(4) + Math.random() * Math.log(400 / 4)));
  const [low, high] = CLASSES.find(([, top]) => tokens <= top);
  predict([textOfTokens(SENTENCES, tokens, __VU * 100000 + __ITER)], { tokens: `${low}-${high}` });
}
