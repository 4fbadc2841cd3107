-- ingressctl.balancer.chash: upstream-hash-by, a consistent hash of a per-request key (hashkey.lua)
-- over the endpoints (ring.lua): the same key goes to the same endpoint while it exists, and a change
-- from N to N+1 endpoints moves about 1/(N+1) of the keys. A retry goes to an endpoint not tried yet.
local ngx_balancer = require("ngx.balancer")
local hashkey = require("ingressctl.hashkey")
local ring = require("ingressctl.ring")

local get_last_failure = ngx_balancer.get_last_failure
local lookup = ring.lookup

local M = {}
M.__index = M

M.new = ring.constructor(M)

-- Peers and the key function (chashsubset's too).
function M:prepare(endpoints, backend)
    ring.set_peers(self, endpoints)
    self.key = hashkey.compile(backend and backend.hash_by or "$remote_addr")
end

function M:sync(endpoints, backend)
    self:prepare(endpoints, backend)
    self.ring = ring.update(self.ring, self.ids)
end

function M:balance()
    local index = self.index_of[lookup(self.ring, self.key())]
    if get_last_failure() ~= nil then
        index = ring.other(self.ids, index, ring.tried())
    end
    local peer = self.peers[index]
    return peer[1], peer[2]
end

return M
