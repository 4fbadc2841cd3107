-- ingressctl.balancer: per-request routing to the endpoints of the route's backend.
-- rewrite(): keeps this worker's backends in step with the shared dict (it decodes the JSON only
-- when the version changed, never per request) and answers 503 when the backend has no endpoint.
-- balance(): balancer_by_lua; picks the peer with the backend's algorithm, retries the next one.
local ngx_balancer = require("ngx.balancer")
local cjson = require("cjson.safe")

local dict = ngx.shared.ingressctl
local ngx_var = ngx.var

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

function M.rewrite()
    local name = ngx_var.ingressctl_backend
    if name == nil or name == "" then
        return
    end
    sync()
    local backend = backends[name]
    if backend == nil or backend.count == 0 then
        return ngx.exit(503)
    end
end

function M.balance()
    local backend = backends[ngx_var.ingressctl_backend]
    if backend == nil or backend.count == 0 then
        -- rewrite() answered 503 already; nothing can reach here without endpoints.
        return ngx.exit(502)
    end
    if ngx_balancer.get_last_failure() == nil and backend.count > 1 then
        ngx_balancer.set_more_tries(backend.count - 1)
    end
    local address, port = backend:balance()
    local ok, err = ngx_balancer.set_current_peer(address, port)
    if not ok then
        ngx.log(ngx.ERR, "ingressctl: set_current_peer failed: ", err)
        return ngx.exit(502)
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
