-- ingressctl.canary: per request, whether a route with a canary Ingress goes to the canary backend or
-- to the main one, with ingress-nginx's precedence: header, then cookie, then weight.
--   header: with header_value, that exact value sends to the canary (others fall through); with
--           header_pattern, a matching value does (a regex error keeps the main backend); else
--           `always` sends to the canary and `never` to the main backend.
--   cookie: `always` / `never`, the same way.
--   weight: math.random(weight_total) <= weight: 0 never, weight_total always (both exact).
-- The policy comes with the route's backend from the configuration API (validated there);
-- prepare() runs once per decoded backend, so a request pays ngx.ctx, a few table reads and the
-- checks the policy asks for. Routes without a canary never reach this module.
local ngx_var = ngx.var
local re_find = ngx.re.find
local random = math.random

local M = {}

-- The nginx variable of a header: $http_ + its name in lower case with '-' as '_'.
function M.header_variable(name)
    return "http_" .. name:lower():gsub("-", "_")
end

-- The stored policy (a decoded JSON object) with what choose() needs precomputed; nil stays nil.
function M.prepare(policy)
    if policy == nil then
        return nil
    end
    if policy.header then
        policy.header_var = M.header_variable(policy.header)
    end
    if policy.cookie then
        policy.cookie_var = "cookie_" .. policy.cookie
    end
    return policy
end

-- true: this request goes to the canary backend.
local function to_canary(policy)
    local var = policy.header_var
    if var then
        local value = ngx_var[var]
        if value then
            local wanted = policy.header_value
            if wanted then
                if value == wanted then
                    return true
                end
            elseif policy.header_pattern then
                local from, _, err = re_find(value, policy.header_pattern, "jo")
                if from then
                    return true
                end
                if err then
                    ngx.log(ngx.ERR, "ingressctl: canary header pattern of ", policy.backend, ": ", err)
                    return false
                end
            elseif value == "always" then
                return true
            elseif value == "never" then
                return false
            end
        end
    end
    var = policy.cookie_var
    if var then
        local value = ngx_var[var]
        if value == "always" then
            return true
        elseif value == "never" then
            return false
        end
    end
    local weight = policy.weight
    return weight > 0 and random(policy.weight_total) <= weight
end

-- The backend name this request goes to: the canary's, or the main one's.
function M.choose(policy)
    if to_canary(policy) then
        return policy.backend
    end
    return policy.main
end

-- The backend instance this request goes to, from `get` (backends.get): a canary backend without
-- ready endpoints gives way to the main one, as in ingress-nginx (nil: the main one is unknown).
-- The choice is made once per request: nginx's retries (proxy_next_upstream) run the balancer again
-- and stay with the backend chosen first (ingress-nginx keeps it in ngx.ctx too).
function M.route(policy, get)
    local ctx = ngx.ctx
    local chosen = ctx.ingressctl_canary
    if chosen == nil then
        chosen = to_canary(policy)
        ctx.ingressctl_canary = chosen
    end
    if chosen then
        local backend = get(policy.backend)
        if backend ~= nil and backend.count > 0 then
            return backend
        end
    end
    return get(policy.main)
end

return M
