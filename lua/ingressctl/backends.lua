-- ingressctl.backends: the backends store in the shared dict, and this worker's view of it.
--
-- Store layout (lua_shared_dict ingressctl; configuration.lua is the only writer):
--   "b:<name>"  one backend's JSON, {"name":...,"endpoints":[{"address":...,"port":...}]}, with
--               "algorithm" and its settings ("hash_by", "subset_size", "cookie") when not the default,
--               and for a route with a canary Ingress its "canary" policy (see ingressctl.canary)
--   "version"   integer, bumped with incr once per accepted update (never a timestamp)
--   "log:<v>"   the names that version v changed (upserted or removed), newline-separated, or
--               "*" when it changed more than LOG_MAX_NAMES (workers rebuild then: about the
--               same work, and the log stays small); the last LOG_KEEP versions are kept
--   "epoch"     a token made when the store is empty: a new master (new dict) has a new one
--   "lock"      held by the writer while it changes the store (workers are separate processes)
-- A writer stores the entries, then the log of the next version, then bumps the version, all
-- without yielding, under the lock. So a worker that reads version V finds the logs up to V.
--
-- sync() runs per request but costs one dict read unless the version moved. Then the worker
-- applies the backends named in the logs of the versions it missed (decoding only those); with
-- no local state, a gap past LOG_KEEP or a missing log it rebuilds from every "b:" entry. An entry
-- it reads may already be newer than the version it read: that version's log names it again,
-- so the worker reads it again then, and ends up with what the store holds.
local cjson = require("cjson.safe")
local canary = require("ingressctl.canary")

local dict = ngx.shared.ingressctl

-- The algorithm registry, set by ingressctl.balancer (which owns it) when it is loaded.
local ALGORITHMS = {}
local DEFAULT_ALGORITHM = nil

local M = {}

function M.use_algorithms(algorithms, default)
    ALGORITHMS, DEFAULT_ALGORITHM = algorithms, default
end
M.LOG_KEEP = 256
M.LOG_MAX_NAMES = 512
M.REBUILD = "*"
M.PREFIX = "b:"
-- Counters for tests and debugging: full rebuilds, catch-ups from the logs, backends decoded,
-- and the CPU milliseconds the last rebuild and the last catch-up took (os.clock: this process).
M.stats = { full = 0, delta = 0, decoded = 0, full_ms = 0, delta_ms = 0 }

local version = nil -- the version this worker is at; nil: no state yet
local backends = {} -- name -> algorithm instance
local endpoints = {} -- name -> the endpoints as stored (for the ?worker view and tests)

function M.key(name)
    return M.PREFIX .. name
end

function M.log_key(v)
    return "log:" .. v
end

-- Brings backends[name] to the stored JSON text (nil: removed).
local function apply(name, text)
    if text == nil then
        backends[name], endpoints[name] = nil, nil
        return
    end
    M.stats.decoded = M.stats.decoded + 1
    local backend = cjson.decode(text)
    if type(backend) ~= "table" or type(backend.endpoints) ~= "table" then
        ngx.log(ngx.ERR, "ingressctl: stored backend ", name, " is not decodable; keeping the previous one")
        return
    end
    -- The configuration API stores only registered names; an unknown one (a store written by a
    -- newer controller) falls back to the default rather than dropping the backend.
    local algorithm = ALGORITHMS[backend.algorithm or DEFAULT_ALGORITHM] or ALGORITHMS[DEFAULT_ALGORITHM]
    local instance = backends[name]
    if instance and instance.algorithm == algorithm then
        instance:sync(backend.endpoints, backend)
    else
        instance = algorithm.new(backend.endpoints, backend)
        instance.algorithm = algorithm
    end
    instance.canary = canary.prepare(backend.canary) -- a route with a canary Ingress (balancer.lua)
    backends[name], endpoints[name] = instance, backend.endpoints
end

local function rebuild(current)
    local started = os.clock()
    M.stats.full = M.stats.full + 1
    local previous = backends
    backends, endpoints = {}, {}
    local prefix = #M.PREFIX
    for _, key in ipairs(dict:get_keys(0)) do
        if key:sub(1, prefix) == M.PREFIX then
            local name = key:sub(prefix + 1)
            backends[name] = previous[name] -- reuse the instance: round robin keeps its place
            apply(name, dict:get(key))
        end
    end
    version = current
    M.stats.full_ms = (os.clock() - started) * 1000
end

function M.sync()
    local current = dict:get("version")
    if current == version then
        return
    end
    if current == nil then
        backends, endpoints, version = {}, {}, nil
        return
    end
    if version == nil or current < version or current - version > M.LOG_KEEP then
        return rebuild(current)
    end
    local started = os.clock()
    local changed = {}
    for v = version + 1, current do
        local names = dict:get(M.log_key(v))
        if names == nil or names == M.REBUILD then -- dropped from the log, or too many: start over
            return rebuild(current)
        end
        for name in names:gmatch("[^\n]+") do
            changed[name] = true
        end
    end
    M.stats.delta = M.stats.delta + 1
    for name in pairs(changed) do
        apply(name, dict:get(M.key(name)))
    end
    version = current
    M.stats.delta_ms = (os.clock() - started) * 1000
end

-- Drops this worker's view (tests): the next sync() rebuilds, as in a new worker.
function M.forget()
    backends, endpoints, version = {}, {}, nil
end

-- At a worker's start (init_worker): builds the view from the store before the first request,
-- and records the version it started at (stats.start_version; 0: the store was empty).
function M.start()
    M.sync()
    M.stats.start_version = version or 0
end

-- The algorithm instance of a backend (nil if unknown); call sync() first.
function M.get(name)
    return backends[name]
end

-- For tests and the API's ?worker view: syncs, then the version and name -> endpoint count.
function M.state()
    M.sync()
    local out = {}
    for name, backend in pairs(backends) do
        out[name] = backend.count
    end
    return version, out
end

-- For tests and the API's ?worker view: "address:port" of each endpoint of a backend, in order.
function M.endpoints(name)
    local stored = endpoints[name]
    if stored == nil then
        return nil
    end
    local out = {}
    for i, endpoint in ipairs(stored) do
        out[i] = endpoint.address .. ":" .. endpoint.port
    end
    return out
end

return M
