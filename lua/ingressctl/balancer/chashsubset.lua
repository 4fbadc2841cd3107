-- ingressctl.balancer.chashsubset: upstream-hash-by with upstream-hash-by-subset: the endpoints (in the
-- order the controller sends them, sorted) form subsets of subset_size (the last one filled up from
-- the first endpoints, as ingress-nginx does); the key's consistent hash picks a subset, and each
-- request goes to a random endpoint of it. A retry goes to an endpoint not tried yet.
local ngx_balancer = require("ngx.balancer")
local chash = require("ingressctl.balancer.chash")
local ring = require("ingressctl.ring")

local get_last_failure = ngx_balancer.get_last_failure
local random = math.random

local M = setmetatable({}, { __index = chash }) -- prepare() is chash's
M.__index = M

M.new = ring.constructor(M)

function M:sync(endpoints, backend)
    self:prepare(endpoints, backend)
    local count = self.count
    local size = math.min(backend and backend.subset_size or 3, math.max(count, 1))
    local subsets, names = {}, {} -- name -> indexes, and the names in order
    for first = 1, count, size do
        local subset = {}
        for i = 0, size - 1 do
            subset[#subset + 1] = (first + i - 1) % count + 1
        end
        names[#names + 1] = "subset-" .. (#names + 1)
        subsets[names[#names]] = subset
    end
    self.subsets = subsets
    self.ring = ring.update(self.ring, names)
end

function M:balance()
    local subset = self.subsets[ring.lookup(self.ring, self.key())]
    local index = subset[random(1, #subset)]
    if get_last_failure() ~= nil then
        index = ring.other(self.ids, index, ring.tried())
    end
    local peer = self.peers[index]
    return peer[1], peer[2]
end

return M
