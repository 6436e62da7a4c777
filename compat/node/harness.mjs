// Shared plumbing of the compat check scripts. The Go tests start a script with
// node, pass everything through the environment, and talk to it over stdio:
// every protocol line on stdout starts with MARK and holds one JSON object;
// commands arrive on stdin, one per line:
//   eval                 evaluate again now
//   wait <value> <ms>    re-evaluate every 100 ms until the config value is <value> (or <ms> pass)
//   quit                 shut the SDK down, report, exit
import net from 'node:net';
import readline from 'node:readline';

export const MARK = '@@compat ';

export function env(name, fallback) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback !== undefined) return fallback;
    throw new Error(`missing environment variable ${name}`);
  }
  return v;
}

export function send(obj) {
  process.stdout.write(MARK + JSON.stringify(obj) + '\n');
}

// Every TCP connection this process opens to anything but Redis, caught below
// the SDK (a second guard besides the SDK's own URL options).
export const connections = [];

export function guardNetwork(redisPort) {
  const connect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function (...args) {
    let a = args[0];
    if (Array.isArray(a)) a = a[0];
    const o = a !== null && typeof a === 'object' ? a : { port: a, host: args[1] };
    if (!o.path && Number(o.port) !== redisPort) {
      connections.push(`${o.host ?? 'localhost'}:${o.port}`);
    }
    return connect.apply(this, args);
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// serve runs the protocol for sdk: { init(): details, evaluate(): object, shutdown(), report(): object }.
export async function serve(sdk) {
  try {
    const details = await sdk.init();
    send({ event: 'init', ...details, eval: sdk.evaluate() });
    const rl = readline.createInterface({ input: process.stdin });
    for await (const line of rl) {
      const [cmd, ...args] = line.trim().split(/\s+/);
      if (cmd === 'eval') {
        send({ event: 'eval', eval: sdk.evaluate() });
      } else if (cmd === 'wait') {
        const want = Number(args[0]);
        const start = Date.now();
        let e = sdk.evaluate();
        while (e.configValue !== want && Date.now() - start < Number(args[1])) {
          await sleep(100);
          e = sdk.evaluate();
        }
        send({ event: 'wait', waitedMs: Date.now() - start, eval: e });
      } else if (cmd === 'quit') {
        break;
      }
    }
    await sdk.shutdown();
    send({ event: 'bye', connections, ...sdk.report() });
    process.exit(0);
  } catch (err) {
    send({ event: 'error', error: String(err?.stack ?? err) });
    process.exit(1);
  }
}
