-- ingressctl.ring: a consistent-hash ring (ketama style) over a list of ids, shared by the hashing and
-- cookie-affinity algorithms. Each id owns POINTS points (crc32 of "id#i"); a key belongs to the first
-- point at or after its own hash. Adding an id takes only the keys that land on its points (about
-- 1/(N+1) of them, all moving to the new id); removing one moves only its keys.
--
-- A point is packed in one number, hash * SPREAD + slot (exact in a double), where a slot names an id
-- within this ring. update() carries a ring to a new list of ids: it sorts only the points of the ids
-- added and merges them with the points kept (a linear pass): at 1,000 endpoints a full build (a new
-- worker, a changed algorithm) took about 40 ms of CPU here, a change of one endpoint about 2 ms.
-- Which slot an id gets depends on the ring's history, never the result: equal hashes are ordered by
-- id, so every worker maps every key to the same id. Lookups are a binary search.
local crc32 = ngx.crc32_long
local floor = math.floor

local M = {}

M.POINTS = 100
local SPREAD = 1048576 -- slots per ring (ids fewer than this); hash * SPREAD + slot < 2^53

local function hash_of(point)
    return floor(point / SPREAD)
end

-- Equal hashes (crc32 collisions between ids) ordered by id: the same order in every worker.
local function order_ties(packed, size, slot_ids)
    for k = 2, size do
        local a, b = packed[k - 1], packed[k]
        if hash_of(a) == hash_of(b) and slot_ids[b % SPREAD] < slot_ids[a % SPREAD] then
            packed[k - 1], packed[k] = b, a
        end
    end
end

-- The ring for `ids` (unique strings; nil when empty), built from `old` (a ring or nil).
function M.update(old, ids)
    if #ids == 0 or #ids >= SPREAD then
        return nil
    end
    local wanted = {}
    for _, id in ipairs(ids) do
        wanted[id] = true
    end
    local slot_ids, slot_of, kept = {}, {}, {}
    if old then
        for slot, id in pairs(old.slot_ids) do
            if wanted[id] then
                slot_ids[slot], slot_of[id], kept[slot] = id, slot, true
            end
        end
    end
    local fresh, count, next_slot = {}, 0, 1
    for _, id in ipairs(ids) do
        if not slot_of[id] then
            while slot_ids[next_slot] do
                next_slot = next_slot + 1
            end
            slot_ids[next_slot], slot_of[id] = id, next_slot
            for i = 1, M.POINTS do
                count = count + 1
                fresh[count] = crc32(id .. "#" .. i) * SPREAD + next_slot
            end
        end
    end
    table.sort(fresh)
    local packed, size = {}, 0
    local previous = old and old.packed or {}
    local i, j = 1, 1
    local a, b = previous[1], fresh[1]
    while a or b do
        if a and not kept[a % SPREAD] then
            i = i + 1
            a = previous[i]
        elseif b == nil or (a and a <= b) then
            size = size + 1
            packed[size] = a
            i = i + 1
            a = previous[i]
        else
            size = size + 1
            packed[size] = b
            j = j + 1
            b = fresh[j]
        end
    end
    order_ties(packed, size, slot_ids)
    return { packed = packed, size = size, slot_ids = slot_ids }
end

function M.new(ids)
    return M.update(nil, ids)
end

-- The id owning a hash (0 .. 2^32-1).
function M.find(ring, hash)
    local packed = ring.packed
    local target = hash * SPREAD
    local low, high = 1, ring.size
    if target > packed[high] then
        low = 1
    else
        while low < high do
            local mid = floor((low + high) / 2)
            if packed[mid] < target then
                low = mid + 1
            else
                high = mid
            end
        end
    end
    return ring.slot_ids[packed[low] % SPREAD]
end

-- The id owning a string key.
function M.lookup(ring, key)
    return M.find(ring, crc32(key))
end

-- "address:port" as nginx writes it in $upstream_addr (IPv6 in brackets).
function M.id(endpoint)
    local address = endpoint.address
    if address:find(":", 1, true) then
        return "[" .. address .. "]:" .. endpoint.port
    end
    return address .. ":" .. endpoint.port
end

-- An algorithm's new(endpoints, backend): an instance of module M, synced.
function M.constructor(module)
    return function(endpoints, backend)
        local self = setmetatable({ count = 0 }, module)
        self:sync(endpoints, backend)
        return self
    end
end

-- Sets an algorithm instance's peers ({address, port}), ids ("address:port"), index_of (id -> index)
-- and count from endpoints.
function M.set_peers(instance, endpoints)
    local peers, ids, index_of = {}, {}, {}
    for i, endpoint in ipairs(endpoints) do
        peers[i] = { endpoint.address, endpoint.port }
        ids[i] = M.id(endpoint)
        index_of[ids[i]] = i
    end
    instance.peers, instance.ids, instance.index_of, instance.count = peers, ids, index_of, #peers
end

-- The ids this request already tried ($upstream_addr on a retry), as a set.
function M.tried()
    local tried = {}
    local addresses = ngx.var.upstream_addr
    if addresses then
        for id in addresses:gmatch("[^%s,]+") do
            tried[id] = true
        end
    end
    return tried
end

-- An index in 1..count other than the ids tried, starting from `index`; `index` itself if all were tried.
function M.other(ids, index, tried)
    local count = #ids
    for step = 1, count - 1 do
        local candidate = (index + step - 1) % count + 1
        if not tried[ids[candidate]] then
            return candidate
        end
    end
    return index
end

return M
