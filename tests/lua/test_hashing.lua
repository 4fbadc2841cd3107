-- The consistent-hash ring, upstream-hash-by expressions, the affinity cookie's header, ewma's averages,
-- and the algorithms' settings in the configuration API.
local configuration = require("ingressctl.configuration")
local hashkey = require("ingressctl.hashkey")
local ring = require("ingressctl.ring")
local sticky = require("ingressctl.sticky")
local eq = require("runner").eq

local T = {}

local function ids(count)
    local out = {}
    for i = 1, count do
        out[i] = "10.0." .. math.floor(i / 200) .. "." .. (i % 200 + 1) .. ":8080"
    end
    return out
end

-- N -> N+1 endpoints moves about 1/(N+1) of 20,000 keys, every one of them to the new endpoint; and
-- N+1 -> N (that endpoint leaves) moves back exactly those.
function T.adding_an_endpoint_moves_about_one_share_all_to_it()
    for _, count in ipairs({ 3, 10, 50 }) do
        local before_ids, after_ids = ids(count), ids(count + 1)
        local before = ring.new(before_ids)
        local after = ring.update(before, after_ids)
        local moved, keys = 0, 20000
        for k = 1, keys do
            local key = "session-" .. k
            local a, b = ring.lookup(before, key), ring.lookup(after, key)
            if a ~= b then
                moved = moved + 1
                eq(b, after_ids[count + 1], "a moved key goes to the new endpoint")
            end
        end
        local share = moved / keys
        eq(share > 0.4 / (count + 1) and share < 1.6 / (count + 1), true,
            count .. " -> " .. (count + 1) .. ": moved " .. share)
    end
end

function T.keys_spread_over_every_endpoint()
    local list = ids(10)
    local r = ring.new(list)
    local hits = {}
    for k = 1, 20000 do
        local id = ring.lookup(r, "k" .. k)
        hits[id] = (hits[id] or 0) + 1
    end
    for _, id in ipairs(list) do
        eq((hits[id] or 0) > 1000 and (hits[id] or 0) < 3000, true, id .. " got " .. tostring(hits[id]))
    end
end

-- A worker that followed every change and a new worker that built the ring at once agree on every key.
function T.the_ring_is_the_same_whatever_its_history()
    local all = ids(30)
    local followed = ring.new({ all[1], all[2], all[3] })
    local steps = {
        { 1, 2, 3, 4 }, { 2, 3, 4 }, { 5, 2, 3, 4, 6, 7 }, { 7, 6, 5 }, { 1, 5, 6, 7, 8, 9, 10 }, { 10, 9, 30, 1, 2 },
    }
    for n, step in ipairs(steps) do
        local list = {}
        for i, index in ipairs(step) do
            list[i] = all[index]
        end
        followed = ring.update(followed, list)
        local fresh = ring.new(list)
        eq(followed.size, fresh.size, "points after step " .. n)
        for k = 1, 2000 do
            eq(ring.lookup(followed, "x" .. k), ring.lookup(fresh, "x" .. k), "step " .. n .. " key " .. k)
        end
    end
    eq(ring.new({}), nil, "no endpoints: no ring")
end

function T.hash_expressions_accepted()
    for _, expression in ipairs({
        "$remote_addr", "$request_uri", "${request_uri}-text", "$http_x_user_id", "$cookie_session",
        "$arg_id$remote_addr", "user:$arg_user,tenant:${http_x_tenant}", "a${remote_addr}b",
    }) do
        eq(type(hashkey.parse(expression)), "table", expression)
    end
end

function T.hash_expressions_refused()
    for _, expression in ipairs({
        "", "text only", "plain", "$host", "$binary_remote_addr", "$1", "${remote_addr", "$remote_addr;",
        "$remote_addr ", "$", "${}", "$request_uri\"", "$http_a\n", "$remote_addr{", 12, string.rep("$arg_a", 9),
        "$upstream_addr", "$ingressctl_backend",
    }) do
        eq(hashkey.parse(expression), nil, tostring(expression))
    end
end

function T.cookie_header_has_the_attributes()
    local cookie = sticky.settings({ cookie = { name = "route", path = "/app", domain = ".example.com", max_age = 60,
        samesite = "Lax", secure = true } })
    eq(sticky.header(cookie, "0123456789abcdef"), "route=0123456789abcdef; Path=/app; Domain=.example.com; "
        .. "Max-Age=60; SameSite=Lax; Secure; HttpOnly", "header")
    local plain = sticky.settings({})
    eq(sticky.header(plain, "0123456789abcdef"), "INGRESSCOOKIE=0123456789abcdef; Path=/; HttpOnly", "defaults")
    local expiring = sticky.settings({ cookie = { expires = 3600 } })
    local header = sticky.header(expiring, "0123456789abcdef")
    eq(header:match("; Expires=(%a%a%a, %d%d%-%a%a%a%-%d%d %d%d:%d%d:%d%d GMT);") ~= nil, true, header)
end

function T.samesite_none_left_out_for_browsers_that_refuse_it()
    eq(sticky.samesite_none_compatible("Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36"), true, "new")
    eq(sticky.samesite_none_compatible("Mozilla/5.0 Chrome/59.0.3071.115 Safari/537.36"), false, "Chrome 59")
    eq(sticky.samesite_none_compatible("Mozilla/5.0 (iPhone; CPU iPhone OS 12_1 like Mac OS X)"), false, "iOS 12")
    eq(sticky.samesite_none_compatible(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15"),
        false, "Safari on macOS 10.14")
    eq(sticky.samesite_none_compatible(nil), true, "no user agent")
end

local ewma = require("ingressctl.balancer.ewma")

local function endpoints(...)
    local out = {}
    for i, address in ipairs({ ... }) do
        out[i] = { address = address, port = 80 }
    end
    return out
end

function T.ewma_new_endpoints_start_at_the_average()
    local instance = ewma.new(endpoints("10.0.0.1", "10.0.0.2"))
    eq(next(instance.stats), nil, "nothing measured yet")
    instance:sync(endpoints("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    eq(next(instance.stats), nil, "still nothing: a new endpoint scores 0 like the others")
    instance.stats["10.0.0.1:80"] = { 0.1, ngx.now() }
    instance.stats["10.0.0.2:80"] = { 0.3, ngx.now() }
    instance:sync(endpoints("10.0.0.1", "10.0.0.2", "10.0.0.4"))
    eq(instance.stats["10.0.0.3:80"], nil, "an endpoint that left is forgotten")
    eq(math.abs(instance.stats["10.0.0.4:80"][1] - 0.2) < 1e-9, true, "the new one starts at the average")
    eq(instance.stats["10.0.0.1:80"][1], 0.1, "the others keep theirs")
end

local function doc(fields)
    local backend = { name = "default/app:80", endpoints = { { address = "10.0.0.1", port = 80 } } }
    for key, value in pairs(fields) do
        backend[key] = value
    end
    return { backends = { backend } }
end

function T.settings_are_validated()
    eq(configuration.validate(doc({ algorithm = "chash", hash_by = "$remote_addr" })), true, "hash_by")
    eq(configuration.validate(doc({ algorithm = "chashsubset", hash_by = "$arg_a", subset_size = 3 })), true, "subset")
    eq(configuration.validate(doc({ algorithm = "sticky_balanced", cookie = { name = "a", path = "/x", max_age = 1,
        expires = 2, samesite = "None", conditional_samesite_none = true, secure = false,
        change_on_failure = true } })), true, "cookie")
    local cases = {
        { { hash_by = "$host" }, "backends[0].hash_by $host is not one of" },
        { { subset_size = 0 }, "backends[0].subset_size must be an integer from 1 to 64" },
        { { cookie = { name = "a;b" } }, "backends[0].cookie.name must be" },
        { { cookie = { path = "/a b" } }, "backends[0].cookie.path must be a plain path" },
        { { cookie = { domain = "a.com;x" } }, "backends[0].cookie.domain must be a host name" },
        { { cookie = { max_age = 0 } }, "backends[0].cookie.max_age must be an integer" },
        { { cookie = { samesite = "lax" } }, "backends[0].cookie.samesite must be None, Lax or Strict" },
        { { cookie = { secure = "yes" } }, "backends[0].cookie.secure must be true or false" },
        { { cookie = { port = 80 } }, "backends[0].cookie.port is not a cookie field" },
        { { cookie = "x" }, "backends[0].cookie must be an object" },
    }
    for _, case in ipairs(cases) do
        local ok, err = configuration.validate(doc(case[1]))
        eq(ok, nil, case[2])
        eq(err:sub(1, #case[2]), case[2], err)
    end
end

function T.settings_are_stored_in_a_fixed_order()
    local dict = ngx.shared.ingressctl
    dict:flush_all()
    configuration.replace(doc({ algorithm = "sticky_persistent", cookie = { secure = true, name = "n", max_age = 5 } }))
    eq(dict:get("b:default/app:80"), '{"name":"default/app:80","algorithm":"sticky_persistent",'
        .. '"cookie":{"name":"n","max_age":5,"secure":true},"endpoints":[{"address":"10.0.0.1","port":80}]}', "stored")
    dict:flush_all()
end

return T
