local balancer = require("ingressctl.balancer")
local cjson = require("cjson.safe")
local eq = require("runner").eq

local dict = ngx.shared.ingressctl
local T = {}

local function publish(doc)
    dict:set("backends", cjson.encode(doc))
    dict:incr("version", 1, 0)
end

function T.decodes_only_when_the_version_changes()
    publish({ backends = { { name = "default/a:80", endpoints = { { address = "10.0.0.1", port = 80 } } } } })
    local before = balancer.stats.decodes
    local version, state = balancer.state()
    eq(state["default/a:80"], 1, "endpoints of a")
    for _ = 1, 100 do
        balancer.state()
    end
    eq(balancer.stats.decodes, before + 1, "decodes for one version")
    publish({ backends = { { name = "default/a:80", endpoints = {
        { address = "10.0.0.1", port = 80 }, { address = "10.0.0.2", port = 80 } } } } })
    local version2, state2 = balancer.state()
    eq(version2, version + 1, "version")
    eq(state2["default/a:80"], 2, "endpoints after update")
    eq(balancer.stats.decodes, before + 2, "decodes for two versions")
end

function T.two_updates_in_the_same_second_are_both_seen()
    for n = 1, 5 do
        local endpoints = {}
        for i = 1, n do
            endpoints[i] = { address = "10.0.1." .. i, port = 80 }
        end
        publish({ backends = { { name = "default/b:80", endpoints = endpoints } } })
        local _, state = balancer.state()
        eq(state["default/b:80"], n, "endpoints after update " .. n)
    end
end

function T.removed_backends_disappear()
    publish({ backends = { { name = "default/c:80", endpoints = {} } } })
    local _, state = balancer.state()
    eq(state["default/a:80"], nil, "a is gone")
    eq(state["default/c:80"], 0, "c is empty")
end

return T
