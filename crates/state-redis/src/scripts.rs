//! The Lua scripts: each one round trip, run atomically by Redis, sent as
//! `EVALSHA` (the `redis` crate loads a script once on `NOSCRIPT`).

use std::sync::LazyLock;

use redis::Script;

/// Compare-and-set save of one state hash.
///
/// `KEYS[1]` the state key; `ARGV`: mode (`any`, `absent` or `rev`), the
/// expected revision (for `rev`), the new revision, the JSON document, the
/// document's `last_updated` (RFC 3339).
///
/// Returns `{"ok"}` or `{"conflict", current revision or ""}`. A key holding
/// another type fails with Redis' own `WRONGTYPE` error; a hash without a
/// `rev` field (not written by this store) with `NOTSTATE`, and is left alone.
pub(crate) static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local current = redis.call('HGET', KEYS[1], 'rev')
if not current and redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('NOTSTATE the hash has no `rev` field: it was not written by the state store')
end
local mode = ARGV[1]
if (mode == 'absent' and current) or (mode == 'rev' and current ~= ARGV[2]) then
  return {'conflict', current or ''}
end
redis.call('HSET', KEYS[1], 'doc', ARGV[4], 'rev', ARGV[3], 'updated', ARGV[5])
return {'ok'}
"#,
    )
});

/// Describes the keys of one SCAN page for `list`, without reading documents.
///
/// Returns, for each key in `KEYS`, `{updated, size}`: `updated` is "" for a
/// key that is gone or not a state hash (size then says why: -1 gone, -2 not a
/// state hash).
pub(crate) static DESCRIBE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local out = {}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'none' then
    out[i] = {'', -1}
  elseif kind ~= 'hash' then
    out[i] = {'', -2}
  else
    local updated = redis.call('HGET', key, 'updated')
    if updated then
      out[i] = {updated, redis.call('HSTRLEN', key, 'doc')}
    else
      out[i] = {'', -2}
    end
  end
end
return out
"#,
    )
});
