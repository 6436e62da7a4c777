// Read-only statsig-node 6.x data adapter over the statsig-populator "sfp" layout.
// The SDK asks for statsig|/v1/download_config_specs|plain_text|<base64(sha256(sdkKey))>;
// the populator writes that key as a HASH whose field "config" holds the payload.
export class ReadOnlyRedisAdapter {
  /**
   * @param {import('ioredis').Redis} redis a connected ioredis client (you own it)
   * @param {string} [prefix] the populator's REDIS_KEY_PREFIX
   */
  constructor(redis, prefix = '') {
    this.redis = redis;
    this.prefix = prefix;
  }

  async get(key) {
    const config = await this.redis.hget(this.prefix + key, 'config');
    return config ? { result: config } : { error: new Error(`no value at ${key}`) };
  }

  async set(_key, _value, _time) {} // no-op: the populator is the only writer

  async initialize() {}

  async shutdown() {}

  // Poll Redis, not the network, for config changes. ID lists (/v1/get_id_lists)
  // are not written by the populator: they stay on the network (or turn them off).
  supportsPollingUpdatesFor(key) {
    return key === '/v1/download_config_specs';
  }
}
