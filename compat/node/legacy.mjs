// statsig-node 6.x (legacy, v1 payloads) reading Redis through a read-only adapter.
// env: REDIS_ADDR, SDK_KEY, TRIPWIRE_URL, LAYOUT (sfp | node-redis), KEY_PREFIX,
// NODE_REDIS_HASH, LOCAL_MODE (1: statsig-node's localMode, no HTTP at all),
// GATE_PASS, GATE_FAIL, GATE_ODD, CONFIG_NAME, CONFIG_FIELD.
import statsig from 'statsig-node';
import Redis from 'ioredis';
import { ReadOnlyRedisAdapter } from '../adapters/statsig-node.mjs';
import { NodeRedisLayoutAdapter } from '../adapters/statsig-node-noderedis.mjs';
import { env, guardNetwork, serve } from './harness.mjs';

const [host, port] = env('REDIS_ADDR').split(':');
guardNetwork(Number(port));
const tripwire = env('TRIPWIRE_URL');
const names = {
  pass: env('GATE_PASS'), fail: env('GATE_FAIL'), odd: env('GATE_ODD'),
  config: env('CONFIG_NAME'), field: env('CONFIG_FIELD'),
};

const redis = new Redis({ host, port: Number(port), lazyConnect: true, maxRetriesPerRequest: 1 });
const adapter = env('LAYOUT', 'sfp') === 'node-redis'
  ? new NodeRedisLayoutAdapter(redis, env('NODE_REDIS_HASH'))
  : new ReadOnlyRedisAdapter(redis, env('KEY_PREFIX', ''));

// Record what the SDK asks of the adapter, without changing the adapter.
const calls = { get: [], set: [], polling: [] };
const { get, set, supportsPollingUpdatesFor } = adapter;
adapter.get = (key) => { calls.get.push(key); return get.call(adapter, key); };
adapter.set = (key, value, time) => { calls.set.push(key); return set.call(adapter, key, value, time); };
adapter.supportsPollingUpdatesFor = (key) => {
  if (!calls.polling.includes(key)) calls.polling.push(key);
  return supportsPollingUpdatesFor.call(adapter, key);
};

const requests = []; // every HTTP request the SDK tried, caught by networkOverrideFunc
const user = { userID: 'compat-user' };

await serve({
  async init() {
    await redis.connect();
    const d = await statsig.initialize(env('SDK_KEY'), {
      dataAdapter: adapter,
      api: tripwire,
      apiForDownloadConfigSpecs: tripwire,
      apiForGetIdLists: tripwire,
      networkOverrideFunc: (url) => {
        requests.push(String(url));
        return Promise.reject(new Error('compat: the network is off'));
      },
      localMode: env('LOCAL_MODE', '') === '1',
      disableAllLogging: true,
      disableDiagnostics: true,
      initStrategyForIDLists: 'none',
      disableIdListsSync: true,
      initStrategyForIP3Country: 'none',
      rulesetsSyncIntervalMs: 5000, // the SDK's minimum
      initTimeoutMs: 10000,
      logger: { logLevel: 'warn', warn: console.error, error: console.error },
    });
    return { success: d.success, source: d.source ?? null, error: d.error ? String(d.error) : null };
  },
  evaluate() {
    const gate = statsig.getFeatureGate(user, names.pass);
    const config = statsig.getConfig(user, names.config);
    return {
      gatePass: gate.value,
      gateFail: statsig.checkGate(user, names.fail),
      gateOdd: statsig.checkGate(user, names.odd),
      configValue: config.get(names.field, null),
      configLabel: config.get('label', null),
      reason: gate.evaluationDetails?.reason ?? null,
      lcut: gate.evaluationDetails?.configSyncTime ?? null,
    };
  },
  async shutdown() {
    await statsig.shutdownAsync();
    redis.disconnect();
  },
  report() {
    return { requests, calls };
  },
});
