"""Leased claims on a sorted set of due work: overdue feedback (.ledger) and listings whose
``effective_from`` arrives (.store).

Claiming moves each due member's score to the lease's end, so no other claim takes it
meanwhile; settling, once its work is done (the alerts are on the broker), removes each member
still held under that lease. A worker that dies in between loses nothing: the lease ends, the
member is due again, and the next claim does its work (alerts carry the same ids, so one
published before the crash is not raised twice). A member rescheduled or claimed again under a
later lease meanwhile is not this claim's to settle.
"""

from __future__ import annotations

# How long a claimed member stays invisible to other claims: far longer than publishing a burst
# of alerts takes, short enough that a crashed worker's alerts are raised within a minute.
CLAIM_LEASE_SECONDS = 60.0

# KEYS[1]: the sorted set; KEYS[2] (optional): a hash of what each member's work needs, read
# beside it. ARGV: now, limit, lease end. Returns the members (member, info pairs with KEYS[2]).
CLAIM_DUE = """
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, member in ipairs(items) do
  redis.call('ZADD', KEYS[1], ARGV[3], member)
  out[#out + 1] = member
  if KEYS[2] then out[#out + 1] = redis.call('HGET', KEYS[2], member) or '' end
end
return out
"""

# KEYS[1]: the sorted set; KEYS[2], KEYS[3] (optional): the hash to forget a settled member in,
# a sorted set to move it to (scored ARGV[2]). ARGV: lease end, that score, the members.
# Returns how many were settled.
SETTLE_DUE = """
local lease = tonumber(ARGV[1])
local settled = 0
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == lease then
    redis.call('ZREM', KEYS[1], ARGV[i])
    if KEYS[2] then redis.call('HDEL', KEYS[2], ARGV[i]) end
    if KEYS[3] then redis.call('ZADD', KEYS[3], ARGV[2], ARGV[i]) end
    settled = settled + 1
  end
end
return settled
"""
