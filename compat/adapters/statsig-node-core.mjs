// Read-only DataStore for @statsig/statsig-node-core over the statsig-populator "sfp" layout.
// Core asks for statsig|/v2/download_config_specs|plain_text|<id>, where <id> is
// base64(sha256(sdkKey)) by default (dataStoreKeySchemaVersion 'v2') or the first
// 20 characters of the key with dataStoreKeySchemaVersion 'v3'.
//
// Core calls these functions without `this`: define them as own properties
// (closures), not as class methods. Do NOT add getBytes/setBytes: core would then
// read a ...|statsig-br|... key first and parse whatever is there as protobuf.
export class ReadOnlyRedisStore {
  /**
   * @param {import('ioredis').Redis} redis a connected ioredis client (you own it)
   * @param {string} [prefix] the populator's REDIS_KEY_PREFIX
   */
  constructor(redis, prefix = '') {
    this.initialize = async () => {};
    this.shutdown = async () => {};
    this.get = async (key) => {
      const result = await redis.hget(prefix + key, 'config');
      return { result: result ?? undefined }; // core ignores `time` on reads
    };
    this.set = async (_key, _value, _time) => {}; // no-op: the populator is the only writer
    this.supportPollingUpdatesFor = async (key) => key === '/v2/download_config_specs';
  }
}
