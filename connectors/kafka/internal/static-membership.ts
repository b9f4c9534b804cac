/**
 * Static group membership (KIP-345) for kafkajs 2.2.4's consumer. kafkajs's protocol encoders carry
 * `group_instance_id` (JoinGroup v5, SyncGroup v3, Heartbeat v3, LeaveGroup v3), but its consumer has
 * no option for it and its `Broker` methods never pass one. Here the four request definitions fill
 * it in from a registry keyed by group id (`setGroupInstanceId`, which the instance's consumer hub
 * calls before it joins), so the consumer of a group with an instance id joins as a static member.
 *
 * What that changes: a member that restarts with the same instance id (after a crash: no
 * LeaveGroup) takes over its old member id at once and gets its old assignment, instead of joining
 * as a new member and waiting, in the rebalance, for the coordinator to drop the dead one when its
 * session times out (about the session timeout: 10 s by default). A graceful stop still leaves the
 * group (LeaveGroup v3 with the instance id), so its partitions move at once. Two live members with
 * one instance id fence each other: the older gets FENCED_INSTANCE_ID, which ../errors.ts classifies
 * as CONFIG_INVALID (the hub then fails its tasks with it, naming the id).
 *
 * The request versions are negotiated: with a broker older than 2.3 (no JoinGroup v5) the id is not
 * sent and membership stays dynamic. Installed by ./kafkajs.ts once kafkajs is loaded (the definitions
 * are looked up per request, so patching them after load takes effect for every later request).
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** group id -> this process's instance id in it. */
const instanceIds = new Map<string, string>();

/**
 * This process's consumer in `groupId` joins as the static member `instanceId` (undefined: dynamic,
 * the default). Call before the consumer joins.
 */
export function setGroupInstanceId(groupId: string, instanceId: string | undefined): void {
  if (instanceId === undefined) instanceIds.delete(groupId);
  else instanceIds.set(groupId, instanceId);
}

/** Kafka's rule for group.instance.id (as for topic names): 1-249 of [a-zA-Z0-9._-]. */
export function validGroupInstanceId(id: string): boolean {
  return /^[a-zA-Z0-9._-]{1,249}$/.test(id);
}

type Definition = { protocol(o: { version: number }): (args: Record<string, unknown>) => unknown };

let installed = false;

/** Puts the instance ids into kafkajs's group requests (idempotent). */
export function installStaticMembership(): void {
  if (installed) return;
  for (const name of ['joinGroup', 'syncGroup', 'heartbeat', 'leaveGroup']) {
    const definition = require(`kafkajs/src/protocol/requests/${name}/index.js`) as Definition;
    const protocol = definition.protocol.bind(definition);
    definition.protocol = (o) => {
      const build = protocol(o);
      return (args) => {
        const id = typeof args.groupId === 'string' ? instanceIds.get(args.groupId) : undefined;
        return build(
          id === undefined || args.groupInstanceId != null ? args : { ...args, groupInstanceId: id },
        );
      };
    };
  }
  installed = true;
}

/** Whether kafkajs's group requests carry the registered instance ids. */
export function staticMembershipInstalled(): boolean {
  return installed;
}
