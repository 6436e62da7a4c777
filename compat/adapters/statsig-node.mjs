// Read-only statsig-node 6.x data adapter over the statsig-populator "sfp" layout.
// The SDK asks for data-store keys ending in |plain_text|<base64(sha256(sdkKey))>:
//   statsig|/v1/download_config_specs|… a HASH whose field "config" holds the payload
//   statsig|/v1/get_id_lists|…          a HASH whose field "config" holds the ID-list manifest
//   statsig|id_list::<name>|…           a STRING holding that list's file ("+id"/"-id" lines)
const ID_LISTS = 'statsig|/v1/get_id_lists|plain_text|';
const ID_LIST = 'statsig|id_list::';

export class ReadOnlyRedisAdapter {
  /**
   * @param {import('ioredis').Redis} redis a connected ioredis client (you own it)
   * @param {string} [prefix] the populator's REDIS_KEY_PREFIX
   */
  constructor(redis, prefix = '') {
    this.redis = redis;
    this.prefix = prefix;
    this.named = new Map(); // manifest key → names in the manifest last read
    this.held = new Map(); // manifest key → names the SDK may still hold
  }

  async get(key) {
    if (key.startsWith(ID_LIST)) {
      return this.getList(key);
    }
    const config = await this.redis.hget(this.prefix + key, 'config');
    if (!config) {
      return { error: new Error(`no value at ${key}`) };
    }
    return { result: key.startsWith(ID_LISTS) ? this.names(key, JSON.parse(config)) : config };
  }

  // statsig-node reads only the names of the manifest, then each list whole. It
  // never forgets a list that left the manifest, so such a list stays named
  // until the SDK has read it once more as a value that makes it drop the list.
  names(key, manifest) {
    const names = Object.keys(manifest);
    const held = this.held.get(key) ?? new Set();
    names.forEach((name) => held.add(name));
    this.named.set(key, new Set(names));
    this.held.set(key, held);
    return JSON.stringify([...held]);
  }

  async getList(key) {
    const manifestKey = ID_LISTS + key.slice(key.lastIndexOf('|') + 1);
    const name = key.slice(ID_LIST.length, key.lastIndexOf('|plain_text|'));
    if (this.named.get(manifestKey)?.has(name) === false) {
      this.held.get(manifestKey).delete(name);
      return { result: 'removed' }; // not "+…"/"-…": the SDK deletes the list
    }
    const list = await this.redis.get(this.prefix + key);
    return list ? { result: list } : { error: new Error(`no value at ${key}`) };
  }

  async set(_key, _value, _time) {} // no-op: the populator is the only writer

  async initialize() {}

  async shutdown() {}

  // Poll Redis, not the network, for config changes and ID lists.
  supportsPollingUpdatesFor(key) {
    return key === '/v1/download_config_specs' || key === '/v1/get_id_lists';
  }
}
