-- ingressctl.balancer: per-request routing to the endpoints of the route's backend, in the only Lua
-- phase a proxied request runs (balancer_by_lua; no rewrite or access phase; routes using ewma also
-- run log(), their log phase).
-- balance(): keeps this worker's backends in step with the shared dict (backends.sync(): one dict
-- read per request, decoding only the backends that changed), picks the peer with the backend's
-- algorithm and allows nginx to retry the next endpoints. A backend with no ready endpoint sets no
-- peer: nginx then uses the upstream's own `server`, the internal no-endpoints server (503).
-- A route with a canary Ingress has a backend with a canary policy and no endpoints: the request
-- goes on to the main or the canary backend (ingressctl.canary); other routes pay one nil check.
--
-- The algorithm registry: one module per algorithm under ingressctl.balancer.<name>, each with
-- new(endpoints, backend) -> instance, instance:sync(endpoints, backend) and instance:balance() ->
-- address, port (backend: the stored document, with the algorithm's settings: hash_by, subset_size,
-- cookie); an algorithm that learns from answers also has instance:after(), which log() calls from the
-- log phase of the routes using it (only those: the others run no log phase).
-- A backend names its algorithm (the controller sends "algorithm" when it is not the default);
-- the configuration API refuses names not registered here. Python's list (ingressctl.config
-- ALGORITHMS) must name the same modules: a test compares them.
local ngx_balancer = require("ngx.balancer")
local backends = require("ingressctl.backends")
local canary = require("ingressctl.canary")

local ngx_var = ngx.var
local get_last_failure = ngx_balancer.get_last_failure
local set_more_tries = ngx_balancer.set_more_tries
local set_current_peer = ngx_balancer.set_current_peer
local sync = backends.sync
local get = backends.get
local canary_route = canary.route

local M = {}

M.DEFAULT_ALGORITHM = "round_robin"
M.ALGORITHMS = {
    round_robin = require("ingressctl.balancer.round_robin"),
    ewma = require("ingressctl.balancer.ewma"),
    chash = require("ingressctl.balancer.chash"),
    chashsubset = require("ingressctl.balancer.chashsubset"),
    sticky_balanced = require("ingressctl.balancer.sticky_balanced"),
    sticky_persistent = require("ingressctl.balancer.sticky_persistent"),
}
backends.use_algorithms(M.ALGORITHMS, M.DEFAULT_ALGORITHM)

-- The store's counters (how often this worker rebuilt, caught up, decoded a backend).
M.stats = backends.stats

function M.init_worker()
    math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
    -- Build this worker's view now rather than on its first request (a new worker after a reload
    -- would otherwise make that request wait for a full rebuild: ~50 ms at 10,000 backends).
    backends.start()
end

function M.balance()
    sync()
    local backend = get(ngx_var.ingressctl_backend)
    if backend == nil then
        return -- no peer set: the no-endpoints server answers 503
    end
    if backend.canary ~= nil then -- a route with a canary Ingress (ingressctl.canary): main or canary
        backend = canary_route(backend.canary, get)
        if backend == nil then
            return
        end
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

local function feed(backend)
    if backend ~= nil and backend.after ~= nil then
        backend:after()
    end
end

-- The log phase of routes whose algorithm learns from answers (ewma): feeds the backend's instance.
-- Behind a canary route either backend may have answered: each takes only its own endpoints' answers.
function M.log()
    local backend = get(ngx_var.ingressctl_backend)
    if backend ~= nil and backend.canary ~= nil then
        feed(get(backend.canary.main))
        feed(get(backend.canary.backend))
        return
    end
    feed(backend)
end

-- For tests: this worker's version and name -> endpoint count.
function M.state()
    return backends.state()
end

return M
