import t from 'tap';
import { formatDuration, parseDuration } from '../src/util/duration.js';

t.test('parseDuration accepts the seed forms and rejects the rest', async (t) => {
  const ok: Array<[string, number]> = [['90s', 90], ['5m', 300], ['1h30m', 5400], ['10m', 600], ['1d', 86400], ['0', 0], ['0s', 0], ['2h', 7200]];
  for (const [text, seconds] of ok) t.equal(parseDuration(text), seconds, text);
  for (const bad of ['', '5', '5x', 'm5', '1.5h', '-5m', '5m1h', ' 5m', '5 m', 'five minutes']) {
    t.equal(parseDuration(bad), undefined, JSON.stringify(bad));
  }
});

t.test('formatDuration is the inverse of parseDuration on canonical forms', async (t) => {
  for (const [seconds, text] of [[0, '0s'], [90, '1m30s'], [300, '5m'], [5400, '1h30m'], [86400, '1d'], [129600, '36h']] as const) {
    t.equal(formatDuration(seconds), text);
    t.equal(parseDuration(text), seconds);
  }
});
