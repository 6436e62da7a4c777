// Read-only statsig-node 6.x data adapter over the "node-redis" layout: the layout
// of the statsig-node-redis package (one HASH, default "statsig-redis"; field = the
// key the SDK asks for; value = base64 of a zlib stream). Unlike that package it
// never writes and it lets the SDK poll Redis for config changes.
import { inflateSync } from 'node:zlib';

export class NodeRedisLayoutAdapter {
  /**
   * @param {import('ioredis').Redis} redis a connected ioredis client (you own it)
   * @param {string} [hash] REDIS_KEY_PREFIX + REDIS_NODE_REDIS_HASH
   */
  constructor(redis, hash = 'statsig-redis') {
    this.redis = redis;
    this.hash = hash;
  }

  async get(key) {
    const value = await this.redis.hget(this.hash, key);
    if (!value) {
      return { error: new Error(`no field ${key} in ${this.hash}`) };
    }
    return { result: inflateSync(Buffer.from(value, 'base64')).toString('utf8') };
  }

  async set(_key, _value, _time) {} // no-op: the populator is the only writer

  async initialize() {}

  async shutdown() {}

  supportsPollingUpdatesFor(key) {
    return key === '/v1/download_config_specs';
  }
}
