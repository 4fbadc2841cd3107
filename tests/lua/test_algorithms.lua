-- The algorithm registry (ingressctl.balancer): what the configuration API accepts, and what a
-- worker builds for a stored backend.
local balancer = require("ingressctl.balancer")
local backends = require("ingressctl.backends")
local configuration = require("ingressctl.configuration")
local eq = require("runner").eq

local T = {}

local function doc(algorithm)
    return { backends = { { name = "default/app:80", algorithm = algorithm, endpoints = { { address = "10.0.0.1", port = 80 } } } } }
end

function T.registry_names_its_modules()
    eq(balancer.DEFAULT_ALGORITHM, "round_robin", "default")
    for name, module in pairs(balancer.ALGORITHMS) do
        eq(module, require("ingressctl.balancer." .. name), name)
        eq(type(module.new), "function", name .. ".new")
    end
end

function T.accepts_registered_algorithms_only()
    for name in pairs(balancer.ALGORITHMS) do
        eq(configuration.validate(doc(name)), true, name)
    end
    eq(configuration.validate(doc(nil)), true, "absent: the default")
    for _, name in ipairs({ "random", "ROUND_ROBIN", "round_robin ", "", "__index", 1 }) do
        local ok, err = configuration.validate(doc(name))
        eq(ok, nil, tostring(name))
        eq(err, "backends[0].algorithm must be a registered algorithm", tostring(name))
    end
end

function T.a_stored_backend_uses_its_algorithm()
    local dict = ngx.shared.ingressctl
    dict:flush_all()
    local version, changed = configuration.replace({ backends = doc("round_robin").backends })
    eq(type(version), "number", "stored")
    eq(changed, 1, "one backend changed")
    backends.forget()
    backends.sync()
    local instance = backends.get("default/app:80")
    eq(instance.algorithm, balancer.ALGORITHMS.round_robin, "instance of the registered module")
    dict:flush_all()
    backends.forget()
end

return T
