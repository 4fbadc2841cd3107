local rr = require("ingressctl.balancer.round_robin")
local eq = require("runner").eq

local T = {}

local function endpoints(n)
    local out = {}
    for i = 1, n do
        out[i] = { address = "10.0.0." .. i, port = 8000 + i }
    end
    return out
end

function T.visits_every_endpoint_in_turn()
    local b = rr.new(endpoints(3))
    eq(b.count, 3, "count")
    local seen = {}
    for _ = 1, 30 do
        local address, port = b:balance()
        seen[address] = (seen[address] or 0) + 1
        eq(port, 8000 + tonumber(address:match("%d+$")), "port of " .. address)
    end
    for i = 1, 3 do
        eq(seen["10.0.0." .. i], 10, "share of 10.0.0." .. i)
    end
end

function T.sync_changes_the_set_and_keeps_going()
    local b = rr.new(endpoints(5))
    for _ = 1, 4 do
        b:balance()
    end
    b:sync(endpoints(2))
    eq(b.count, 2, "count after sync")
    local a1 = b:balance()
    local a2 = b:balance()
    if a1 == a2 then
        error("two picks in a row returned the same endpoint " .. a1)
    end
    b:sync({})
    eq(b.count, 0, "count when empty")
end
return T
