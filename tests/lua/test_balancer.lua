local balancer = require("ingressctl.balancer")
local backends = require("ingressctl.backends")
local eq = require("runner").eq

local T = {}

local replace = require("runner").replace

function T.state_follows_the_store_and_decodes_only_on_change()
    replace({ { name = "default/a:80", endpoints = { { address = "10.0.0.1", port = 80 } } } })
    local version, state = balancer.state()
    eq(state["default/a:80"], 1, "endpoints of a")
    local decoded = backends.stats.decoded
    for _ = 1, 100 do
        balancer.state()
    end
    eq(backends.stats.decoded, decoded, "no decode while the version stays")
    replace({ { name = "default/a:80", endpoints = {
        { address = "10.0.0.1", port = 80 }, { address = "10.0.0.2", port = 80 } } } })
    local version2, state2 = balancer.state()
    eq(version2, version + 1, "version")
    eq(state2["default/a:80"], 2, "endpoints after update")
    eq(backends.stats.decoded, decoded + 1, "one backend decoded")
end

function T.removed_backends_disappear()
    replace({ { name = "default/a:80", endpoints = {} }, { name = "default/c:80", endpoints = {} } })
    replace({ { name = "default/c:80", endpoints = {} } })
    local _, state = balancer.state()
    eq(state["default/a:80"], nil, "a is gone")
    eq(state["default/c:80"], 0, "c is empty")
end

return T
