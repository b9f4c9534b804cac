/**
 * kafkajs's group requests carry the instance id registered for their group (static-membership.ts):
 * JoinGroup v5, SyncGroup v3, Heartbeat v3 and LeaveGroup v3 as encoded for the wire; other groups'
 * requests and older versions carry none. The behaviour against a broker is in
 * connectors/kafka/test/crash/static-membership.test.ts.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import './kafkajs.ts';
import { setGroupInstanceId, staticMembershipInstalled, validGroupInstanceId } from './static-membership.ts';

const require = createRequire(import.meta.url);
type Built = { request: { encode(): Promise<{ buffer: Buffer }> } };
const definition = (name: string) =>
  require(`kafkajs/src/protocol/requests/${name}/index.js`) as {
    protocol(o: { version: number }): (args: Record<string, unknown>) => Built;
  };

async function wire(name: string, version: number, args: Record<string, unknown>): Promise<string> {
  return (await definition(name).protocol({ version })(args).request.encode()).buffer.toString('latin1');
}

const ARGS: Record<string, Record<string, unknown>> = {
  joinGroup: {
    sessionTimeout: 10_000,
    rebalanceTimeout: 20_000,
    memberId: 'm-1',
    protocolType: 'consumer',
    groupProtocols: [{ name: 'p', metadata: Buffer.from('x') }],
  },
  syncGroup: { generationId: 1, memberId: 'm-1', groupAssignment: [] },
  heartbeat: { groupGenerationId: 1, memberId: 'm-1' },
  leaveGroup: { memberId: 'm-1' },
};

test('the group requests of a registered group carry its instance id; others and old versions none', async () => {
  assert.ok(staticMembershipInstalled());
  setGroupInstanceId('static-g', 'instance-7');
  try {
    for (const [name, version] of [
      ['joinGroup', 5],
      ['syncGroup', 3],
      ['heartbeat', 3],
      ['leaveGroup', 3],
    ] as const) {
      const args = ARGS[name]!;
      assert.ok((await wire(name, version, { ...args, groupId: 'static-g' })).includes('instance-7'), name);
      assert.ok(
        !(await wire(name, version, { ...args, groupId: 'other-g' })).includes('instance-7'),
        `${name}, other group`,
      );
    }
    assert.ok(
      !(await wire('joinGroup', 4, { ...ARGS.joinGroup, groupId: 'static-g' })).includes('instance-7'),
    );
  } finally {
    setGroupInstanceId('static-g', undefined);
  }
  assert.ok(!(await wire('joinGroup', 5, { ...ARGS.joinGroup, groupId: 'static-g' })).includes('instance-7'));
});

test("Kafka's rule for instance ids: 1-249 of a-z A-Z 0-9 . _ -", () => {
  for (const ok of ['a', 'orders-0', 'A.b_c-9', 'x'.repeat(249)]) assert.ok(validGroupInstanceId(ok), ok);
  for (const bad of ['', 'x'.repeat(250), 'a b', 'a/b', 'é']) assert.ok(!validGroupInstanceId(bad), bad);
});
