local configuration = require("ingressctl.configuration")
local eq = require("runner").eq

local T = {}

local function ok(doc)
    local valid, err = configuration.validate(doc)
    if not valid then
        error("expected valid, got: " .. tostring(err), 2)
    end
end

local function bad(doc, fragment)
    local valid, err = configuration.validate(doc)
    eq(valid, nil, "valid")
    if not err:find(fragment, 1, true) then
        error("error '" .. err .. "' does not mention '" .. fragment .. "'", 2)
    end
end

function T.accepts_a_valid_document()
    ok({ backends = {
        { name = "default/app:80", endpoints = { { address = "10.0.0.1", port = 8080 }, { address = "fd00::1", port = 80 } } },
        { name = "ns/empty:443", endpoints = {} },
    } })
    ok({ backends = {} })
end

function T.rejects_wrong_shapes()
    bad("x", "backends")
    bad({}, "backends")
    bad({ backends = { "x" } }, "backends[0] must be an object")
    bad({ backends = { { name = "a b", endpoints = {} } } }, "backends[0].name")
    bad({ backends = { { name = "default/app:80" } } }, "endpoints must be an array")
    bad({ backends = { { name = "default/app:80", endpoints = {}, }, { name = "default/app:80", endpoints = {} } } },
        "duplicate")
end

function T.rejects_bad_endpoints()
    local function with(endpoint)
        return { backends = { { name = "default/app:80", endpoints = { endpoint } } } }
    end
    bad(with({ address = "example.com", port = 80 }), "address")
    bad(with({ address = "300.1.1.1", port = 80 }), "address")
    bad(with({ address = "10.0.0.1;", port = 80 }), "address")
    bad(with({ address = "10.0.0.1", port = 0 }), "port")
    bad(with({ address = "10.0.0.1", port = 65536 }), "port")
    bad(with({ address = "10.0.0.1", port = 80.5 }), "port")
    bad(with({ address = "10.0.0.1", port = "80" }), "port")
end

return T
