/** Joins built on keyed state and event-time timers: interval, windowed and table (lookup) joins. */
export { IntervalJoin, type IntervalJoinOptions } from './interval-join.ts';
export { TableJoin, type TableJoinOptions, type TableUpdate } from './table-join.ts';
export { type JoinWindow, WindowJoin, type WindowJoinOptions } from './window-join.ts';
