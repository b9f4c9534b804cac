/**
 * Network namespaces for tests (Linux, root, iproute2): a process started with `ns.exec` as its
 * command prefix has its own network stack (its own loopback, its own 127.0.0.1 ports, no route to
 * the host's), joined to the host by one veth pair, `hostAddress` on the host end and `address` on its
 * own. No iptables or socat is needed (this machine has neither), and the harness broker and S3Proxy,
 * which listen on the host's 127.0.0.1 and advertise it, need no change: each forwarded port is relayed
 * in two hops, both plain TCP relays,
 *
 *   namespace 127.0.0.1:port -> (relay process inside the namespace) -> hostAddress:port over the veth
 *   -> (relay in this process, on the host end) -> host 127.0.0.1:to
 *
 * so a Kafka client inside reaches the broker at the address it advertises (127.0.0.1:<port>), and an
 * S3 client reaches its endpoint, while nothing else of the host, and nothing of another namespace, is
 * reachable. `remove()` stops both relays and deletes the namespace and its veth; namespaces a killed
 * test process left behind (named after its pid) are deleted by the next `createNamespace`.
 *
 * Run as a script (`node netns.ts relay <listenPort>=<host>:<port> ...`) it is the relay inside the
 * namespace: it exits when its stdin closes, so it never outlives the test process that started it.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SELF = fileURLToPath(import.meta.url);
const PREFIX = 'ksn-';

export interface NetNamespace {
  readonly name: string;
  /** The host end of the veth (where this process relays from). */
  readonly hostAddress: string;
  /** The namespace's own address on the veth. */
  readonly address: string;
  /** Command prefix that runs a program inside the namespace: `['ip', 'netns', 'exec', name]`. */
  readonly exec: readonly string[];
  /** Stops the relays, deletes the veth and the namespace. Idempotent. */
  remove(): Promise<void>;
}

export interface Forward {
  /** Port on the namespace's 127.0.0.1. */
  readonly port: number;
  /** Port on the host's 127.0.0.1 it leads to; default the same. */
  readonly to?: number;
}

async function ip(...args: string[]): Promise<string> {
  return (await run('ip', args)).stdout;
}

/** Joins two sockets both ways; either closing or failing closes the other. */
function join(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const close = () => {
    a.destroy();
    b.destroy();
  };
  a.once('error', close).once('close', close);
  b.once('error', close).once('close', close);
}

/** A TCP relay: connections to host:port are joined to toHost:toPort. */
function relay(host: string, port: number, toHost: string, toPort: number): Promise<Server> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    sockets.add(client);
    client.once('close', () => sockets.delete(client));
    join(client, createConnection({ host: toHost, port: toPort }));
  });
  server.on('close', () => {
    for (const s of sockets) s.destroy();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/**
 * Why namespaces cannot be used here (not Linux, not root, no `ip`, or `ip netns add` refused), or
 * undefined when they can: a test skips its namespace case with this reason.
 */
export async function netnsUnavailable(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0)
    return 'network namespaces need root (ip netns add); this test runs as a user';
  const probe = `${PREFIX}${process.pid.toString(36)}-probe`;
  try {
    await ip('netns', 'add', probe);
  } catch (e) {
    const why =
      (e as { code?: string; stderr?: string }).code === 'ENOENT'
        ? 'no `ip` command (iproute2)'
        : String((e as { stderr?: string }).stderr ?? e).trim();
    return `ip netns add failed: ${why}`;
  }
  await ip('netns', 'del', probe).catch(() => {});
  return undefined;
}

/** Deletes namespaces (and their veths) that a test process no longer alive left behind. */
async function sweepStale(): Promise<void> {
  const names = (await ip('netns', 'list').catch(() => ''))
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(PREFIX));
  for (const name of names) {
    // `ksn-<pid in base 36>-<index or probe>`
    const m = /^ksn-([0-9a-z]+)-(\d+|probe)$/.exec(name);
    const pid = m === null ? Number.NaN : Number.parseInt(m[1]!, 36);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    try {
      process.kill(pid, 0);
      continue; // its test process still runs
    } catch {}
    await ip('netns', 'del', name).catch(() => {});
  }
}

/** A /30 subnet of 10.213.0.0/16 no host interface uses: [host end, namespace end]. */
async function freeSubnet(index: number): Promise<[string, string]> {
  const used = await ip('-4', '-o', 'addr', 'show');
  for (let n = 0; n < 256 * 64; n++) {
    const third = (process.pid + n + index * 7) % 256;
    const fourth = ((n + index) % 64) * 4;
    const host = `10.213.${third}.${fourth + 1}`;
    if (
      !used.includes(` 10.213.${third}.${fourth + 1}/`) &&
      !used.includes(` 10.213.${third}.${fourth + 2}/`)
    ) {
      return [host, `10.213.${third}.${fourth + 2}`];
    }
  }
  throw new Error('no free /30 in 10.213.0.0/16 for a test namespace');
}

let created = 0;

/** A namespace joined to the host by a veth, with `forward`ed ports relayed to the host's loopback. */
export async function createNamespace(forward: readonly Forward[]): Promise<NetNamespace> {
  await sweepStale();
  const index = created++;
  const tag = `${process.pid.toString(36)}-${index}`;
  const name = `${PREFIX}${tag}`;
  // Interface names: at most 15 characters.
  const hostIf = `ksh${process.pid.toString(36)}x${index}`;
  const nsIf = `ksn${process.pid.toString(36)}x${index}`;
  const [hostAddress, address] = await freeSubnet(index);
  const servers: Server[] = [];
  let inside: ChildProcess | undefined;
  let removed: Promise<void> | undefined;
  const remove = (): Promise<void> => {
    removed ??= (async () => {
      if (inside?.exitCode === null && inside.signalCode === null) {
        const exited = new Promise((r) => inside?.once('exit', r));
        inside.kill('SIGKILL');
        await exited;
      }
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
      await ip('link', 'del', hostIf).catch(() => {});
      await ip('netns', 'del', name).catch(() => {});
    })();
    return removed;
  };
  try {
    await ip('netns', 'add', name);
    await ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', name);
    await ip('addr', 'add', `${hostAddress}/30`, 'dev', hostIf);
    await ip('link', 'set', hostIf, 'up');
    await ip('-n', name, 'addr', 'add', `${address}/30`, 'dev', nsIf);
    await ip('-n', name, 'link', 'set', nsIf, 'up');
    await ip('-n', name, 'link', 'set', 'lo', 'up');
    for (const f of forward) servers.push(await relay(hostAddress, f.port, '127.0.0.1', f.to ?? f.port));
    if (forward.length > 0) {
      const child = spawn(
        'ip',
        [
          'netns',
          'exec',
          name,
          process.execPath,
          SELF,
          'relay',
          ...forward.map((f) => `${f.port}=${hostAddress}:${f.port}`),
        ],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      inside = child;
      let output = '';
      child.stderr.on('data', (d: Buffer) => {
        output += d.toString();
      });
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          output += d.toString();
          if (output.includes('relaying')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`the relay in ${name} exited (${code}): ${output}`)));
      });
    }
  } catch (e) {
    await remove();
    throw e;
  }
  return { name, hostAddress, address, exec: ['ip', 'netns', 'exec', name], remove };
}

/** Whether a TCP connection from inside `ns` to host:port succeeds (a check of what it can reach). */
export async function reachableFrom(ns: NetNamespace, host: string, port: number): Promise<boolean> {
  const script = `require('net').connect(${port}, ${JSON.stringify(host)}).on('connect', () => process.exit(0)).on('error', () => process.exit(1)).setTimeout(5000, () => process.exit(1))`;
  return run(ns.exec[0]!, [...ns.exec.slice(1), process.execPath, '-e', script]).then(
    () => true,
    () => false,
  );
}

/** The relay inside a namespace: `<listenPort>=<host>:<port>` each; exits when stdin closes. */
async function relayMain(specs: readonly string[]): Promise<void> {
  for (const spec of specs) {
    const m = /^(\d+)=([\d.]+):(\d+)$/.exec(spec);
    if (m === null) throw new Error(`relay: ${spec} is not <listenPort>=<host>:<port>`);
    await relay('127.0.0.1', Number(m[1]), m[2]!, Number(m[3]));
  }
  process.stdout.write('relaying\n');
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.resume();
}

if (process.argv[1] === SELF && process.argv[2] === 'relay') {
  relayMain(process.argv.slice(3)).catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
