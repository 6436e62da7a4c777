// @statsig/statsig-node-core (server-core, v2 payloads) reading Redis through a
// read-only DataStore. env: REDIS_ADDR, SDK_KEY, TRIPWIRE_URL, KEY_SCHEMA (v2 | v3 |
// default: leave dataStoreKeySchemaVersion out), KEY_PREFIX, GATE_PASS, GATE_FAIL,
// GATE_ODD, CONFIG_NAME, CONFIG_FIELD.
import { Statsig, StatsigUser } from '@statsig/statsig-node-core';
import Redis from 'ioredis';
import { ReadOnlyRedisStore } from '../adapters/statsig-node-core.mjs';
import { env, guardNetwork, serve } from './harness.mjs';

const [host, port] = env('REDIS_ADDR').split(':');
guardNetwork(Number(port));
const tripwire = new URL(env('TRIPWIRE_URL'));
const names = {
  pass: env('GATE_PASS'), fail: env('GATE_FAIL'), odd: env('GATE_ODD'),
  config: env('CONFIG_NAME'), field: env('CONFIG_FIELD'),
};

const redis = new Redis({ host, port: Number(port), lazyConnect: true, maxRetriesPerRequest: 1 });
const store = new ReadOnlyRedisStore(redis, env('KEY_PREFIX', ''));

// Record what the SDK asks of the store, without changing the store.
const calls = { get: [], set: [], polling: [] };
const { get, set, supportPollingUpdatesFor } = store;
store.get = (key) => { calls.get.push(key); return get(key); };
store.set = (key, value, time) => { calls.set.push(key); return set(key, value, time); };
store.supportPollingUpdatesFor = (key) => {
  if (!calls.polling.includes(key)) calls.polling.push(key);
  return supportPollingUpdatesFor(key);
};

const t = tripwire.origin;
const schema = env('KEY_SCHEMA', 'default');
const statsig = new Statsig(env('SDK_KEY'), {
  dataStore: store,
  ...(schema === 'default' ? {} : { dataStoreKeySchemaVersion: schema }),
  specsUrl: `${t}/v2/download_config_specs`,
  idListsUrl: `${t}/v1/get_id_lists`,
  downloadIdListFileApi: `${t}/v1/download_id_list_file/`,
  logEventUrl: `${t}/v1/log_event`,
  // Anything core sends elsewhere (e.g. its hard-coded sdk_exception endpoint)
  // goes through this "proxy", which is the tripwire too.
  proxyConfig: { proxyHost: tripwire.hostname, proxyPort: Number(tripwire.port), proxyProtocol: 'http' },
  disableAllLogging: true,
  disableCountryLookup: true,
  enableIdLists: false,
  specsSyncIntervalMs: 1000,
  initTimeoutMs: 10000,
  outputLogLevel: 'warn',
});

const updates = []; // specs_updated events: where core says its specs came from
statsig.subscribe('specs_updated', (e) => {
  updates.push({ source: e?.data?.source ?? null, sourceApi: e?.data?.source_api ?? null, time: e?.data?.values?.time ?? null });
});

const user = new StatsigUser({ userID: 'compat-user' });

await serve({
  async init() {
    await redis.connect();
    const r = await statsig.initialize();
    return { success: r.isSuccess, error: r.error ?? null };
  },
  evaluate() {
    const gate = statsig.getFeatureGate(user, names.pass);
    const config = statsig.getDynamicConfig(user, names.config);
    return {
      gatePass: gate.value,
      gateFail: statsig.checkGate(user, names.fail),
      gateOdd: statsig.checkGate(user, names.odd),
      configValue: config.getValue(names.field, null),
      configLabel: config.getValue('label', null),
      reason: gate.details?.reason ?? null,
      lcut: gate.details?.lcut ?? null,
    };
  },
  async shutdown() {
    await statsig.shutdown();
    redis.disconnect();
  },
  report() {
    return { calls, updates };
  },
});
