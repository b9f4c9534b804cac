/**
 * Named points where tests inject failures into a running task (the failure-injection suites of
 * testing/). An injector throws to fail at that point; production runs pass none.
 */
export type FaultPoint =
  /** In the synchronous part of a checkpoint, before the capture: fails the task. */
  | 'snapshot.capture'
  /** In the asynchronous part, before files are written: fails the checkpoint. */
  | 'snapshot.write'
  /** In the asynchronous part, files written, before the sinks flush: fails the checkpoint. */
  | 'sink.flush'
  /** After the checkpoint committed, before operators and sinks are notified: fails the task. */
  | 'checkpoint.after-commit';

export type FaultInjector = (
  point: FaultPoint,
  info: { readonly taskId: string; readonly checkpointId: number },
) => void;
