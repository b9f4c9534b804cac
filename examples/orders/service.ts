/**
 * The orders job as a module for the CLI: `kstate run examples/orders/service.ts`.
 * Topics and job id from ORDERS_INPUT, ORDERS_OUTPUT, ORDERS_JOB_ID (defaults: orders,
 * customer-totals, orders).
 */
import { ordersJob } from './job.ts';

export default () =>
  ordersJob({
    jobId: process.env.ORDERS_JOB_ID ?? 'orders',
    input: process.env.ORDERS_INPUT ?? 'orders',
    output: process.env.ORDERS_OUTPUT ?? 'customer-totals',
  });
