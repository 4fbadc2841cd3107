-- The backends store: full replace and deltas (configuration.lua, the writer) and this worker's
-- view of them (backends.lua, the reader), inside a real nginx worker.
local backends = require("ingressctl.backends")
local configuration = require("ingressctl.configuration")
local eq = require("runner").eq

local dict = ngx.shared.ingressctl
local T = {}

local function ep(...)
    local out = {}
    for i, address in ipairs({ ... }) do
        out[i] = { address = address, port = 8080 }
    end
    return out
end

local replace = require("runner").replace

-- A delta on top of the store's current epoch and version.
local function delta(upsert, remove)
    return configuration.delta({
        epoch = configuration.epoch(),
        base = dict:get("version") or 0,
        upsert = upsert or {},
        remove = remove or {},
    })
end

local function must(version, status, why)
    if not version then
        error("delta failed: " .. tostring(status) .. " " .. tostring(why), 2)
    end
    return version
end

local function served(name)
    backends.sync()
    local list = backends.endpoints(name)
    return list and table.concat(list, ",") or nil
end

-- Runs fn with backends[field] set to value, and restores it whatever happens.
local function with_setting(field, value, fn)
    local saved = backends[field]
    backends[field] = value
    local ok, err = pcall(fn)
    backends[field] = saved
    assert(ok, err)
end

local function base_state()
    replace({
        { name = "t/a:80", endpoints = ep("10.1.0.1") },
        { name = "t/b:80", endpoints = ep("10.1.0.2", "10.1.0.3") },
    })
    backends.sync()
end

function T.delta_adds_modifies_and_removes()
    base_state()
    local decoded = backends.stats.decoded
    local before = dict:get("version")
    local version = must(delta({
        { name = "t/a:80", endpoints = ep("10.1.0.9") },
        { name = "t/c:80", endpoints = ep("10.1.0.4") },
    }, { "t/b:80" }))
    eq(version, before + 1, "one version per delta")
    eq(served("t/a:80"), "10.1.0.9:8080", "a modified")
    eq(served("t/b:80"), nil, "b removed")
    eq(served("t/c:80"), "10.1.0.4:8080", "c added")
    eq(backends.stats.decoded, decoded + 2, "only the two upserted backends decoded")
    eq(dict:get(backends.key("t/b:80")), nil, "b's entry is gone from the store")
end

function T.invalid_delta_answers_400_and_keeps_the_store()
    base_state()
    local before = dict:get("version")
    local cases = {
        { { epoch = configuration.epoch(), base = before, upsert = { { name = "t/a:80", endpoints = ep("x") } } }, "address" },
        { { epoch = configuration.epoch(), base = before, upsert = { { name = "t/a:80", endpoints = { { address = "10.0.0.1", port = 0 } } } } }, "port" },
        { { epoch = configuration.epoch(), base = before, remove = { "not a name" } }, "remove[0]" },
        { { epoch = configuration.epoch(), base = before, upsert = { { name = "t/a:80", endpoints = {} } }, remove = { "t/a:80" } }, "duplicate" },
        { { epoch = configuration.epoch(), base = before, upsert = "x" }, "upsert must be an array" },
        { { epoch = configuration.epoch(), base = before, upsert = { x = 1 } }, "upsert must be an array" },
        { { epoch = configuration.epoch(), base = before, remove = { x = "t/a:80" } }, "remove must be an array" },
        { { base = before }, "epoch" },
        { { epoch = configuration.epoch(), base = "7" }, "base" },
        -- The first upsert is valid, the second is not: nothing of it is stored.
        { { epoch = configuration.epoch(), base = before, upsert = {
            { name = "t/a:80", endpoints = ep("10.9.9.9") }, { name = "t/z:80", endpoints = ep("10.0.0.300") } } }, "upsert[1]" },
    }
    for i, case in ipairs(cases) do
        local version, status, why = configuration.delta(case[1])
        eq(version, nil, "case " .. i .. " accepted")
        eq(status, 400, "case " .. i .. " status")
        if not why:find(case[2], 1, true) then
            error("case " .. i .. ": '" .. why .. "' does not mention '" .. case[2] .. "'")
        end
    end
    eq(dict:get("version"), before, "version unchanged")
    eq(served("t/a:80"), "10.1.0.1:8080", "a unchanged")
    eq(served("t/b:80"), "10.1.0.2:8080,10.1.0.3:8080", "b unchanged")
end

function T.delta_on_another_version_or_epoch_answers_409()
    base_state()
    local before = dict:get("version")
    local change = { { name = "t/a:80", endpoints = ep("10.1.0.8") } }
    local _, status = configuration.delta({ epoch = configuration.epoch(), base = before - 1, upsert = change })
    eq(status, 409, "older base")
    _, status = configuration.delta({ epoch = "another-master", base = before, upsert = change })
    eq(status, 409, "other epoch (the dict of another nginx master)")
    eq(dict:get("version"), before, "version unchanged")
    eq(served("t/a:80"), "10.1.0.1:8080", "a unchanged")
end

function T.two_updates_in_the_same_second_are_both_seen()
    base_state()
    local second = math.floor(ngx.now())
    for n = 1, 5 do
        local endpoints = {}
        for i = 1, n do
            endpoints[i] = { address = "10.2.0." .. i, port = 8080 }
        end
        must(delta({ { name = "t/a:80", endpoints = endpoints } }))
        local _, state = backends.state()
        eq(state["t/a:80"], n, "endpoints after update " .. n)
    end
    ngx.update_time()
    eq(math.floor(ngx.now()) - second <= 1, true, "the updates took about a second at most")
end

function T.worker_catches_up_over_several_versions_in_one_pass()
    base_state()
    local full, catchups, decoded = backends.stats.full, backends.stats.delta, backends.stats.decoded
    for i = 1, 6 do
        must(delta({ { name = "t/a:80", endpoints = ep("10.3.0." .. i) } }))
    end
    must(delta({ { name = "t/d:80", endpoints = ep("10.3.1.1") } }, { "t/b:80" }))
    eq(served("t/a:80"), "10.3.0.6:8080", "a at its last value")
    eq(served("t/b:80"), nil, "b removed")
    eq(served("t/d:80"), "10.3.1.1:8080", "d added")
    eq(backends.stats.delta, catchups + 1, "one catch-up for seven versions")
    eq(backends.stats.full, full, "no rebuild")
    eq(backends.stats.decoded, decoded + 2, "a and d decoded once each")
end

function T.worker_rebuilds_when_too_far_behind()
    base_state()
    with_setting("LOG_KEEP", 3, function()
        local full = backends.stats.full
        for i = 1, 5 do
            must(delta({ { name = "t/a:80", endpoints = ep("10.4.0." .. i) } }))
        end
        eq(dict:get(backends.log_key(dict:get("version") - 3)), nil, "old log entries dropped")
        must(delta(nil, { "t/b:80" }))
        eq(served("t/a:80"), "10.4.0.5:8080", "a at its last value")
        eq(served("t/b:80"), nil, "b removed by the rebuild")
        eq(backends.stats.full, full + 1, "one rebuild")
    end)
end

function T.worker_rebuilds_when_a_log_entry_is_missing()
    base_state()
    local full = backends.stats.full
    must(delta({ { name = "t/a:80", endpoints = ep("10.5.0.1") } }))
    must(delta(nil, { "t/b:80" }))
    dict:delete(backends.log_key(dict:get("version") - 1)) -- as if evicted
    eq(served("t/a:80"), "10.5.0.1:8080", "a")
    eq(served("t/b:80"), nil, "b removed")
    eq(backends.stats.full, full + 1, "rebuilt")
end

function T.worker_rebuilds_after_a_version_that_changed_many()
    base_state()
    with_setting("LOG_MAX_NAMES", 2, function()
        local full = backends.stats.full
        must(delta({ { name = "t/a:80", endpoints = ep("10.4.1.1") }, { name = "t/g:80", endpoints = ep("10.4.1.2") } },
            { "t/b:80" }))
        eq(dict:get(backends.log_key(dict:get("version"))), backends.REBUILD, "logged as a rebuild")
        eq(served("t/a:80"), "10.4.1.1:8080", "a")
        eq(served("t/b:80"), nil, "b removed")
        eq(served("t/g:80"), "10.4.1.2:8080", "g")
        eq(backends.stats.full, full + 1, "one rebuild")
    end)
end

function T.new_worker_builds_from_the_entries()
    base_state()
    must(delta({ { name = "t/e:80", endpoints = ep("10.6.0.1", "10.6.0.2") } }))
    backends.forget()
    local version, state = backends.state()
    eq(version, dict:get("version"), "at the store's version")
    eq(state["t/e:80"], 2, "e")
    eq(state["t/a:80"], 1, "a")
end

function T.entry_newer_than_the_version_read_is_read_again()
    -- A worker may read an entry that a writer changed after the worker read the version: the
    -- next version's log names it, so the worker converges on what the store holds.
    base_state()
    local version = dict:get("version")
    must(delta({ { name = "t/a:80", endpoints = ep("10.7.0.1") } }))
    -- A writer in the middle of its commit: the entry is stored, the version not yet bumped.
    dict:set(backends.key("t/a:80"), '{"name":"t/a:80","endpoints":[{"address":"10.7.0.2","port":8080}]}')
    eq(served("t/a:80"), "10.7.0.2:8080", "the newer entry")
    eq(backends.state(), version + 1, "at the version read")
    dict:set(backends.log_key(version + 2), "t/a:80")
    dict:incr("version", 1)
    eq(served("t/a:80"), "10.7.0.2:8080", "after the writer finished")
end

function T.full_replace_logs_only_what_differs()
    base_state()
    local before = dict:get("version")
    local version, changed = configuration.replace({ backends = {
        { name = "t/a:80", endpoints = ep("10.1.0.1") },
        { name = "t/b:80", endpoints = ep("10.1.0.2", "10.1.0.3") },
    } })
    eq(version, before + 1, "a replace always makes a version")
    eq(changed, 0, "nothing differs")
    eq(dict:get(backends.log_key(version)), "", "empty log")
    version, changed = configuration.replace({ backends = { { name = "t/b:80", endpoints = ep("10.1.0.2") } } })
    eq(changed, 2, "a removed, b changed")
    eq(served("t/a:80"), nil, "a removed")
    eq(served("t/b:80"), "10.1.0.2:8080", "b changed")
end

function T.invalid_full_replace_keeps_the_store()
    base_state()
    local before = dict:get("version")
    local version, status, why = configuration.replace({ backends = {
        { name = "t/a:80", endpoints = ep("10.8.0.1") }, { name = "t/a:80", endpoints = {} } } })
    eq(version, nil, "accepted")
    eq(status, 400, "status")
    eq(why:find("duplicate", 1, true) ~= nil, true, "reason")
    eq(dict:get("version"), before, "version")
    eq(served("t/a:80"), "10.1.0.1:8080", "a unchanged")
end

function T.a_writer_error_releases_the_lock()
    base_state()
    local ok, err = pcall(with_setting, "key", function()
        error("boom")
    end, function()
        configuration.replace({ backends = { { name = "t/a:80", endpoints = ep("10.9.0.1") } } })
    end)
    eq(ok, false, "the writer's error reaches the caller")
    eq(tostring(err):find("boom", 1, true) ~= nil, true, "the error itself")
    eq(dict:get("lock"), nil, "lock released")
    local started = ngx.now()
    local version = replace({ { name = "t/a:80", endpoints = ep("10.9.0.2") } })
    eq(version ~= nil and ngx.now() - started < 1, true, "the next write goes through at once")
    eq(served("t/a:80"), "10.9.0.2:8080", "and is served")
end

function T.full_dict_answers_507_and_workers_follow_what_was_stored()
    base_state()
    local junk, filler = {}, string.rep("x", 16384)
    for i = 1, 10000 do -- fill the dict (without evicting anything) until it is full
        local ok = dict:safe_set("junk:" .. i, filler)
        if not ok then
            break
        end
        junk[#junk + 1] = "junk:" .. i
    end
    dict:delete(table.remove(junk)) -- room for a small backend, not for a big one
    local ok, err = pcall(function()
        local big = {}
        for i = 1, 2000 do
            big[i] = { address = "10.10." .. (i % 250) .. "." .. (i % 200 + 1), port = 8080 }
        end
        local before = dict:get("version")
        local version, status, why = delta({
            { name = "t/a:80", endpoints = ep("10.10.0.1") },
            { name = "t/h:80", endpoints = big },
        })
        eq(version, nil, "accepted")
        eq(status, 507, "status")
        eq(why:find("t/h:80", 1, true) ~= nil, true, "names the backend: " .. tostring(why))
        eq(dict:get("version"), before + 1, "what was written is published")
        eq(dict:get(backends.key("t/h:80")), nil, "h not stored")
        eq(served("t/a:80"), "10.10.0.1:8080", "a, written before the dict was full, is served")
        eq(dict:get(backends.key("t/b:80")) ~= nil, true, "nothing was evicted")
    end)
    for _, key in ipairs(junk) do
        dict:delete(key)
    end
    assert(ok, err)
end

function T.stored_text_is_canonical()
    replace({ { endpoints = ep("10.9.0.1"), name = "t/f:80" } })
    eq(dict:get(backends.key("t/f:80")), '{"name":"t/f:80","endpoints":[{"address":"10.9.0.1","port":8080}]}', "text")
end

return T
