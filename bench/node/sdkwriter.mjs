// The SDK-as-writer baseline: one statsig-node 6.5.2 StatsigServer per SDK key,
// all in this one Node process, each polling the (fake) CDN every interval and
// writing what it downloads into Redis through a data adapter, in the layout
// the populator writes (the "sfp" HASH at the hashed v1 key):
//
//   HSET statsig|/v1/download_config_specs|plain_text|<base64(sha256(key))>
//        config <payload> lcut <time> encoding plain_text
//
// env: KEYS_FILE (one key per line), API (fake CDN base URL, loopback only),
// REDIS_PORT, INTERVAL_MS (default 10000). Instances start spread evenly over
// one interval, as servers started at different times would be, so their
// polls are too. Prints "ready N" once every instance has initialized.
import { readFileSync } from 'node:fs';
import { StatsigServer } from 'statsig-node';
import Redis from 'ioredis';

const env = (name, dflt) => {
  const v = process.env[name] ?? dflt;
  if (v === undefined) throw new Error(`${name} is required`);
  return v;
};
const api = env('API');
if (!/^http:\/\/(127\.|localhost)/.test(api)) throw new Error('API must be a loopback URL');
const interval = Number(env('INTERVAL_MS', '10000'));
const sdkKeys = readFileSync(env('KEYS_FILE'), 'utf8').split('\n').map((s) => s.trim()).filter((s) => s && !s.startsWith('#'));
const redis = new Redis({ host: '127.0.0.1', port: Number(env('REDIS_PORT')), maxRetriesPerRequest: 1 });

// A writing adapter: reads Redis at start (as statsig-node-redis does), then
// polls the network (supportsPollingUpdatesFor is false) and stores every
// update with its time.
class WritingRedisAdapter {
  async get(key) {
    const config = await redis.hget(key, 'config');
    return config ? { result: config } : { error: new Error(`no value at ${key}`) };
  }
  async set(key, value, time) {
    if (!key.includes('download_config_specs')) return;
    await redis.hset(key, 'config', value, 'lcut', String(time ?? 0), 'encoding', 'plain_text');
  }
  async initialize() {}
  async shutdown() {}
  supportsPollingUpdatesFor() { return false; }
}

const options = {
  dataAdapter: new WritingRedisAdapter(),
  api: `${api}/v1`,
  apiForDownloadConfigSpecs: `${api}/v1`,
  apiForGetIdLists: `${api}/v1`,
  disableAllLogging: true,
  disableDiagnostics: true,
  initStrategyForIDLists: 'none',
  disableIdListsSync: true,
  initStrategyForIP3Country: 'none',
  rulesetsSyncIntervalMs: interval,
  // With several instances in one process, statsig-node 6.5.2 still POSTs
  // /v1/log_event (diagnostics markers) every loggingIntervalMs despite
  // disableAllLogging: about 0.05 per instance per second at the default 60 s.
  // Push that out of the measured window so the baseline only polls and writes.
  loggingIntervalMs: 3_600_000,
  initTimeoutMs: 30000,
  logger: { logLevel: 'error', warn: () => {}, error: console.error },
};

const servers = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const inits = sdkKeys.map(async (key, i) => {
  await sleep((interval * i) / sdkKeys.length);
  const s = new StatsigServer(key, { ...options, dataAdapter: new WritingRedisAdapter() });
  servers.push(s);
  const d = await s.initializeAsync();
  if (!d.success) console.error('init failed', i, String(d.error));
});
await Promise.all(inits);
console.log(`ready ${servers.length}`);

const stop = async () => {
  await Promise.all(servers.map((s) => s.shutdownAsync().catch(() => {})));
  redis.disconnect();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
