-- ingressctl.balancer.sticky_balanced: affinity: cookie with affinity-mode: balanced (the default). The
-- cookie holds a random session key; the key's consistent hash (ring.lua) names the endpoint. A
-- session whose endpoint left hashes to another one (re-pinned, same cookie); scaling from N to N+1
-- endpoints moves about 1/(N+1) of the sessions, all to the new endpoint. Choice and cookie: sticky.lua.
local ring = require("ingressctl.ring")
local sticky = require("ingressctl.sticky")

local lookup = ring.lookup

local M = {}
M.__index = M

M.TRIES = 20 -- new keys tried for a new session after a failure, to avoid the endpoints tried

M.new = ring.constructor(M)

function M:sync(endpoints, backend)
    ring.set_peers(self, endpoints)
    self.ring = ring.update(self.ring, self.ids)
    self.cookie = sticky.settings(backend)
end

function M:find(key)
    return self.index_of[lookup(self.ring, key)]
end

function M:pick(tried)
    local key = sticky.new_key()
    local id = lookup(self.ring, key)
    if tried then
        for _ = 1, M.TRIES do
            if not tried[id] then
                break
            end
            key = sticky.new_key()
            id = lookup(self.ring, key)
        end
    end
    return self.index_of[id], key
end

M.balance = sticky.balance

return M
