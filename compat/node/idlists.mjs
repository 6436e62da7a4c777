// statsig-node 6.x instances in localMode reading ID lists from Redis through
// ReadOnlyRedisAdapter, several in one process (StatsigServer), so that one
// started before a change and one started after it can be compared without a
// second node start-up. env: REDIS_ADDR, SDK_KEY, TRIPWIRE_URL, KEY_PREFIX,
// ID_LISTS_SYNC_MS (statsig-node's minimum is 30000).
//
// Protocol (see harness.mjs): instance "A" is started at once and reported as
// "init"; then, one command a line:
//   start <id>                 start another instance, reported as "start"
//   wait <id> <true|false> <ms> re-evaluate <id> every 100 ms until the ID-list gate
//                              for "abc" is that value (or <ms> pass); reported as "wait"
//   quit                       shut every instance down and report ("bye")
// Every report carries the instance's evaluation of the fixture's gates.
import statsigNode from 'statsig-node';
import Redis from 'ioredis';
import readline from 'node:readline';
import { ReadOnlyRedisAdapter } from '../adapters/statsig-node.mjs';
import { connections, env, guardNetwork, send } from './harness.mjs';

const { StatsigServer } = statsigNode;
const [host, port] = env('REDIS_ADDR').split(':');
guardNetwork(Number(port));
const tripwire = env('TRIPWIRE_URL');
const redis = new Redis({ host, port: Number(port), lazyConnect: true, maxRetriesPerRequest: 1 });

const requests = []; // every HTTP request an instance tried, caught by networkOverrideFunc
const instances = new Map(); // id → { server, calls }
// Calls are recorded until quit: shutdownAsync syncs once more, which must not
// pass for the instances' own polling.
let recording = true;

// The fixture's gates: on_for_id_list passes for a userID in list_1.
const inList = { userID: 'abc' }; // ungWv48B, in list_1.txt
const notInList = { userID: 'regular_user_id' }; // 7/rrkvF6, in no list

async function start(id) {
  const adapter = new ReadOnlyRedisAdapter(redis, env('KEY_PREFIX', ''));
  // Record what this instance asks of its adapter, with the time (ms since
  // its start) of each ID-list manifest read, without changing the adapter.
  const calls = { get: [], set: [], polling: [], manifestReads: [] };
  const started = Date.now();
  const { get, set, supportsPollingUpdatesFor } = adapter;
  adapter.get = (key) => {
    if (recording && !calls.get.includes(key)) calls.get.push(key);
    if (recording && key.includes('|/v1/get_id_lists|')) calls.manifestReads.push(Date.now() - started);
    return get.call(adapter, key);
  };
  adapter.set = (key, value, time) => {
    if (recording) calls.set.push(key);
    return set.call(adapter, key, value, time);
  };
  adapter.supportsPollingUpdatesFor = (key) => {
    if (recording && !calls.polling.includes(key)) calls.polling.push(key);
    return supportsPollingUpdatesFor.call(adapter, key);
  };
  const server = new StatsigServer(env('SDK_KEY'), {
    dataAdapter: adapter,
    api: tripwire,
    apiForDownloadConfigSpecs: tripwire,
    apiForGetIdLists: tripwire,
    networkOverrideFunc: (url) => {
      requests.push(`${id}: ${url}`);
      return Promise.reject(new Error('compat: the network is off'));
    },
    localMode: true,
    disableAllLogging: true,
    disableDiagnostics: true,
    initStrategyForIDLists: 'await',
    idListsSyncIntervalMs: Number(env('ID_LISTS_SYNC_MS')),
    initStrategyForIP3Country: 'none',
    rulesetsSyncIntervalMs: 5000,
    initTimeoutMs: 10000,
    logger: { logLevel: 'warn', warn: console.error, error: console.error },
  });
  instances.set(id, { server, calls });
  const d = await server.initializeAsync();
  return { id, success: d.success, source: d.source ?? null, error: d.error ? String(d.error) : null, eval: evaluate(id) };
}

function evaluate(id) {
  const { server } = instances.get(id);
  const gate = server.getFeatureGateWithExposureLoggingDisabledSync(inList, 'on_for_id_list');
  return {
    inList: gate.value,
    notInList: server.checkGateWithExposureLoggingDisabledSync(notInList, 'on_for_id_list'),
    alwaysOn: server.checkGateWithExposureLoggingDisabledSync(inList, 'always_on_gate'),
    reason: gate.evaluationDetails?.reason ?? null,
    lcut: gate.evaluationDetails?.configSyncTime ?? null,
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

try {
  await redis.connect();
  send({ event: 'init', ...(await start('A')) });
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const [cmd, id, ...args] = line.trim().split(/\s+/);
    if (cmd === 'start') {
      send({ event: 'start', ...(await start(id)) });
    } else if (cmd === 'wait') {
      const want = args[0] === 'true';
      const begin = Date.now();
      let e = evaluate(id);
      while (e.inList !== want && Date.now() - begin < Number(args[1])) {
        await sleep(100);
        e = evaluate(id);
      }
      send({ event: 'wait', id, waitedMs: Date.now() - begin, eval: e });
    } else if (cmd === 'quit') {
      break;
    }
  }
  recording = false;
  for (const { server } of instances.values()) {
    await server.shutdownAsync();
  }
  redis.disconnect();
  const calls = Object.fromEntries([...instances].map(([id, i]) => [id, i.calls]));
  send({ event: 'bye', connections, requests, instances: calls });
  process.exit(0);
} catch (err) {
  send({ event: 'error', error: String(err?.stack ?? err) });
  process.exit(1);
}
