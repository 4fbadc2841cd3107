-- ingressctl.balancer: per-request routing to the endpoints of the route's backend.
-- rewrite(): keeps this worker's backends in step with the shared dict (backends.sync(): one dict
-- read per request, decoding only the backends that changed) and answers 503 when the backend has
-- no endpoint.
-- balance(): balancer_by_lua; picks the peer with the backend's algorithm, retries the next one.
local ngx_balancer = require("ngx.balancer")
local backends = require("ingressctl.backends")

local ngx_var = ngx.var

local M = {}
-- The store's counters (how often this worker rebuilt, caught up, decoded a backend).
M.stats = backends.stats

function M.init_worker()
    math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
end

function M.rewrite()
    local name = ngx_var.ingressctl_backend
    if name == nil or name == "" then
        return
    end
    backends.sync()
    local backend = backends.get(name)
    if backend == nil or backend.count == 0 then
        return ngx.exit(503)
    end
end

function M.balance()
    local backend = backends.get(ngx_var.ingressctl_backend)
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

-- For tests: this worker's version and name -> endpoint count.
function M.state()
    return backends.state()
end

return M
