-- ingressctl.balancer.round_robin: each worker walks the endpoints in turn, starting at a random
-- one so that several workers do not all hit the first endpoint together.
local M = {}
M.__index = M

function M.new(endpoints)
    local self = setmetatable({ index = 0, peers = {}, count = 0 }, M)
    self:sync(endpoints)
    if self.count > 0 then
        self.index = math.random(0, self.count - 1)
    end
    return self
end

function M:sync(endpoints)
    local peers = {}
    for i, endpoint in ipairs(endpoints) do
        peers[i] = { endpoint.address, endpoint.port }
    end
    self.peers = peers
    self.count = #peers
    if self.index >= self.count then
        self.index = 0
    end
end

function M:balance()
    local index = self.index % self.count + 1
    self.index = index
    local peer = self.peers[index]
    return peer[1], peer[2]
end

return M
