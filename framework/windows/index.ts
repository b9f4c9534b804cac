/** The public windowing API (docs/windows.md); `KeyedStream.window(...)` returns a `WindowedStream`. */
export {
  type SessionWindows,
  type SlidingWindows,
  sessionEventTime,
  sessionProcessingTime,
  slidingEventTime,
  slidingProcessingTime,
  type TimeWindow,
  type TumblingWindows,
  tumblingEventTime,
  tumblingProcessingTime,
  type WindowAssigner,
} from './assigners.ts';
export type { ProcessWindowFunction, WindowContext, WindowResultFunction } from './emit.ts';
export type { WindowOptions } from './operator.ts';
export { countTrigger, eventTimeTrigger, processingTimeTrigger, type WindowTrigger } from './triggers.ts';
