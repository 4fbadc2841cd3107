-- ingressctl.balancer: per-request routing to the endpoints of the route's backend, in the only Lua
-- phase a proxied request runs (balancer_by_lua; no rewrite or access phase).
-- balance(): keeps this worker's backends in step with the shared dict (sync() decodes the JSON only
-- when the version changed, never per request), picks the peer with the backend's algorithm and
-- allows nginx to retry the next endpoints. A backend with no ready endpoint sets no peer: nginx
-- then uses the upstream's own `server`, the internal no-endpoints server, which answers 503.
local ngx_balancer = require("ngx.balancer")
local cjson = require("cjson.safe")

local dict = ngx.shared.ingressctl
local ngx_var = ngx.var
local get_last_failure = ngx_balancer.get_last_failure
local set_more_tries = ngx_balancer.set_more_tries
local set_current_peer = ngx_balancer.set_current_peer

local ALGORITHMS = {
    round_robin = require("ingressctl.balancer.round_robin"),
}
local DEFAULT_ALGORITHM = "round_robin"

local M = {}
-- Counters for tests and debugging: how often this worker decoded the backends document.
M.stats = { decodes = 0 }

local version = nil -- the version this worker decoded last
local backends = {} -- name -> algorithm instance

local function sync()
    local current = dict:get("version")
    if current == version then
        return
    end
    M.stats.decodes = M.stats.decodes + 1
    local doc = cjson.decode(dict:get("backends") or '{"backends":[]}')
    if type(doc) ~= "table" or type(doc.backends) ~= "table" then
        ngx.log(ngx.ERR, "ingressctl: stored backends are not decodable; keeping the previous ones")
        version = current
        return
    end
    local fresh = {}
    for _, backend in ipairs(doc.backends) do
        local algorithm = ALGORITHMS[backend.algorithm or DEFAULT_ALGORITHM] or ALGORITHMS[DEFAULT_ALGORITHM]
        local instance = backends[backend.name]
        if instance and instance.algorithm == algorithm then
            instance:sync(backend.endpoints)
        else
            instance = algorithm.new(backend.endpoints)
            instance.algorithm = algorithm
        end
        fresh[backend.name] = instance
    end
    backends = fresh
    version = current
end

function M.init_worker()
    math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
end

function M.balance()
    sync()
    local backend = backends[ngx_var.ingressctl_backend]
    if backend == nil then
        return -- no peer set: the no-endpoints server answers 503
    end
    local count = backend.count
    if count == 0 then
        return
    end
    if count > 1 and get_last_failure() == nil then
        set_more_tries(count - 1)
    end
    local ok, err = set_current_peer(backend:balance())
    if not ok then
        ngx.log(ngx.ERR, "ingressctl: set_current_peer failed: ", err)
        return ngx.exit(ngx.ERROR)
    end
end

-- For tests: the decoded state of this worker.
function M.state()
    sync()
    local out = {}
    for name, backend in pairs(backends) do
        out[name] = backend.count
    end
    return version, out
end

return M
