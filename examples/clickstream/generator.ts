import type { Click } from './model.ts';

/**
 * Deterministic clickstream: `users` users browse in bursts (sessions of 1-12 clicks 0.2-4 s apart)
 * separated by pauses of 8-60 s, so that a 5 s session gap splits them; clicks arrive up to 1.5 s
 * out of order (a user's clicks are in time order, the topic interleaves users). Same seed, same clicks.
 */
export function clicks(o: { users: number; perUser: number; start?: number; seed?: number }): Click[] {
  const start = o.start ?? Date.UTC(2026, 0, 1);
  const out: { c: Click; arrival: number }[] = [];
  const pages = ['/', '/search', '/item', '/cart', '/checkout', '/help', '/account'];
  for (let u = 0; u < o.users; u++) {
    let r = (o.seed ?? 7) * 7919 + u * 104729;
    const next = () => {
      r = (Math.imul(r, 1103515245) + 12345) & 0x7fffffff;
      return r;
    };
    let t = start + (next() % 10_000);
    let left = o.perUser;
    while (left > 0) {
      const burst = Math.min(left, 1 + (next() % 12));
      for (let i = 0; i < burst; i++) {
        const c = { user: `user-${u}`, page: pages[next() % pages.length]!, ts: t };
        out.push({ c, arrival: t + (next() % 1500) });
        t += 200 + (next() % 3800);
      }
      left -= burst;
      t += 8000 + (next() % 52_000);
    }
  }
  return out.sort((a, b) => a.arrival - b.arrival).map((x) => x.c);
}
