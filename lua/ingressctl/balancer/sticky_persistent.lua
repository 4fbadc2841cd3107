-- ingressctl.balancer.sticky_persistent: affinity: cookie with affinity-mode: persistent. The cookie
-- names its endpoint (16 hex digits of md5(backend name, "address:port")); a session stays there as
-- long as it exists, also when endpoints are added (none move). A cookie naming an endpoint that left
-- is re-pinned: a new endpoint and a new cookie. New sessions go round robin. Choice and cookie:
-- sticky.lua.
local ring = require("ingressctl.ring")
local sticky = require("ingressctl.sticky")

local M = {}
M.__index = M

function M.new(endpoints, backend)
    local self = setmetatable({ count = 0, index = 0 }, M)
    self:sync(endpoints, backend)
    if self.count > 0 then
        self.index = math.random(0, self.count - 1)
    end
    return self
end

function M:sync(endpoints, backend)
    ring.set_peers(self, endpoints)
    local salt = backend and backend.name or ""
    local keys, by_key = {}, {}
    for i, id in ipairs(self.ids) do
        keys[i] = ngx.md5(salt .. " " .. id):sub(1, 16)
        by_key[keys[i]] = i
    end
    self.keys, self.by_key = keys, by_key
    self.cookie = sticky.settings(backend)
end

function M:find(key)
    return self.by_key[key]
end

function M:pick(tried)
    local count = self.count
    local index
    for _ = 1, count do
        index = self.index % count + 1
        self.index = index
        if not (tried and tried[self.ids[index]]) then
            break
        end
    end
    return index, self.keys[index]
end

M.balance = sticky.balance

return M
