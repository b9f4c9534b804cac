import { SESSION_GAP_MS } from './job.ts';
import type { Click, Session } from './model.ts';

/** Batch sessionisation: each user's clicks in time order, split where two are `SESSION_GAP_MS` or more apart. */
export function sessions(all: readonly Click[]): Session[] {
  const byUser = new Map<string, Click[]>();
  for (const c of all) byUser.set(c.user, [...(byUser.get(c.user) ?? []), c]);
  const out: Session[] = [];
  for (const [user, cs] of byUser) {
    const sorted = [...cs].sort((a, b) => a.ts - b.ts);
    let cur: Click[] = [];
    const close = () => {
      if (cur.length === 0) return;
      out.push({
        user,
        start: cur[0]!.ts,
        end: cur[cur.length - 1]!.ts + SESSION_GAP_MS,
        clicks: cur.length,
        pages: [...new Set(cur.map((c) => c.page))].sort(),
        landing: cur[0]!.page,
      });
      cur = [];
    };
    for (const c of sorted) {
      if (cur.length > 0 && c.ts - cur[cur.length - 1]!.ts >= SESSION_GAP_MS) close();
      cur.push(c);
    }
    close();
  }
  return out;
}
