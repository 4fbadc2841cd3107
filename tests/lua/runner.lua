-- Runs the Lua unit tests inside a real nginx worker (content_by_lua) and prints JSON results.
-- Each tests/lua/test_*.lua module returns a table of name -> function; a test fails by error().
local cjson = require("cjson.safe")

local M = {}

function M.run(modules)
    local results = {}
    for _, module in ipairs(modules) do
        local tests = require(module)
        local names = {}
        for name in pairs(tests) do
            names[#names + 1] = name
        end
        table.sort(names)
        for _, name in ipairs(names) do
            local ok, err = pcall(tests[name])
            results[#results + 1] = { name = module .. "." .. name, ok = ok, err = ok and "" or tostring(err) }
        end
    end
    ngx.header.content_type = "application/json"
    ngx.say(cjson.encode(results))
end

function M.eq(actual, expected, what)
    if actual ~= expected then
        error((what or "value") .. ": expected " .. tostring(expected) .. ", got " .. tostring(actual), 2)
    end
end

-- Replaces every backend through the configuration API's own function; returns the version.
function M.replace(list)
    local version, status, why = require("ingressctl.configuration").replace({ backends = list })
    if not version then
        error("replace failed: " .. tostring(status) .. " " .. tostring(why), 2)
    end
    return version
end

return M
