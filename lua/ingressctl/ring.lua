-- ingressctl.ring: a consistent-hash ring (ketama style) over a list of ids, shared by the hashing and
-- cookie-affinity algorithms. Each id owns POINTS points (crc32 of "id#i"); a key belongs to the first
-- point at or after its own hash. Adding an id takes only the keys that land on its points (about
-- 1/(N+1) of them, all moving to the new id); removing one moves only its keys. Built once per change of
-- the ids in each worker (sorting N * POINTS numbers), looked up per request by binary search.
local crc32 = ngx.crc32_long
local floor = math.floor

local M = {}

M.POINTS = 100
local SPREAD = 65536 -- points are packed as hash * SPREAD + owner index (at most 65535 ids)

-- ids: a list of unique strings. Returns the ring (nil when there are no ids or too many).
function M.new(ids)
    local count = #ids
    if count == 0 or count >= SPREAD then
        return nil
    end
    local packed, n = {}, 0
    for index, id in ipairs(ids) do
        for i = 1, M.POINTS do
            n = n + 1
            packed[n] = crc32(id .. "#" .. i) * SPREAD + index
        end
    end
    table.sort(packed)
    local points, owners = {}, {}
    for k = 1, n do
        local value = packed[k]
        local owner = value % SPREAD
        owners[k] = owner
        points[k] = (value - owner) / SPREAD
    end
    return { points = points, owners = owners, size = n }
end

-- The index (into ids) of the owner of a key's hash.
function M.find(ring, hash)
    local points = ring.points
    local low, high = 1, ring.size
    if hash > points[high] then
        return ring.owners[1]
    end
    while low < high do
        local mid = floor((low + high) / 2)
        if points[mid] < hash then
            low = mid + 1
        else
            high = mid
        end
    end
    return ring.owners[low]
end

-- The index of the owner of a string key.
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

-- Sets an algorithm instance's peers ({address, port}), ids ("address:port") and count from endpoints.
function M.set_peers(instance, endpoints)
    local peers, ids = {}, {}
    for i, endpoint in ipairs(endpoints) do
        peers[i] = { endpoint.address, endpoint.port }
        ids[i] = M.id(endpoint)
    end
    instance.peers, instance.ids, instance.count = peers, ids, #peers
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
