/** A page view of a user; `ts` is its event time (ms). */
export interface Click {
  readonly user: string;
  readonly page: string;
  readonly ts: number;
}

/** One user session: clicks no more than the session gap apart. */
export interface Session {
  readonly user: string;
  /** First click. */
  readonly start: number;
  /** Last click + gap (the session window's end). */
  readonly end: number;
  readonly clicks: number;
  /** Distinct pages, sorted. */
  readonly pages: readonly string[];
  readonly landing: string;
}

/** A click with a negative time is an end marker: it moves event time past the last session, then is dropped. */
export const isEndMarker = (c: Click): boolean => c.ts < 0 || c.user === '';
