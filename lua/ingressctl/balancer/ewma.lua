-- ingressctl.balancer.ewma: peak-EWMA latency with the power of two choices, as ingress-nginx's ewma:
-- two random endpoints, the one with the lower decayed average response time wins. An endpoint added
-- later starts at the average of the measured ones (slow start, as ingress-nginx: not flooded before its
-- first answer); before any answer every endpoint scores 0. Each worker keeps its own averages, fed by
-- after() from the log phase of the routes that use ewma ($upstream_addr, $upstream_header_time of
-- the last try); a slower answer raises the average at once (peak), a faster one lowers it gradually.
local ngx_balancer = require("ngx.balancer")
local ring = require("ingressctl.ring")

local exp = math.exp
local random = math.random
local now = ngx.now
local ngx_var = ngx.var
local get_last_failure = ngx_balancer.get_last_failure

local M = {}
M.__index = M

M.DECAY = 10 -- seconds: how fast an average forgets

function M.new(endpoints)
    local self = setmetatable({ count = 0, stats = {} }, M)
    self:sync(endpoints)
    return self
end

function M:sync(endpoints)
    ring.set_peers(self, endpoints)
    local stats, known, sum, measured = {}, {}, 0, 0
    for _, id in ipairs(self.ids) do
        local stat = self.stats[id] -- an endpoint that stays keeps its average
        stats[id], known[id] = stat, true
        if stat then
            sum, measured = sum + stat[1], measured + 1
        end
    end
    if measured > 0 then
        local at = now()
        for _, id in ipairs(self.ids) do
            if stats[id] == nil then
                stats[id] = { sum / measured, at }
            end
        end
    end
    self.stats, self.known = stats, known
end

local function score(stat, at)
    if stat == nil then
        return 0
    end
    return stat[1] * exp(-(at - stat[2]) / M.DECAY)
end

function M:balance()
    local count = self.count
    local index = 1
    if count > 1 then
        local first = random(1, count)
        local second = random(1, count - 1)
        if second >= first then
            second = second + 1
        end
        local at = now()
        local stats, ids = self.stats, self.ids
        index = score(stats[ids[first]], at) <= score(stats[ids[second]], at) and first or second
        if get_last_failure() ~= nil then
            index = ring.other(ids, index, ring.tried())
        end
    end
    local peer = self.peers[index]
    return peer[1], peer[2]
end

-- The log phase: folds the last try's response time into its endpoint's average.
function M:after()
    local address = ngx_var.upstream_addr
    local taken = ngx_var.upstream_header_time
    if address == nil or taken == nil then
        return
    end
    local id = address:match("([^%s,]+)$")
    local seconds = tonumber(taken:match("([%d%.]+)$"))
    local stats = self.stats
    if seconds == nil or not self.known[id] then
        return
    end
    local at = now()
    local stat = stats[id]
    if stat == nil then
        stats[id] = { seconds, at }
        return
    end
    if seconds > stat[1] then
        stat[1] = seconds -- peak: a slow answer counts at once
    else
        local weight = exp(-(at - stat[2]) / M.DECAY)
        stat[1] = stat[1] * weight + seconds * (1 - weight)
    end
    stat[2] = at
end

return M
