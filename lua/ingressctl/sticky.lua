-- ingressctl.sticky: the session affinity cookie shared by the sticky_balanced and sticky_persistent
-- algorithms: reading it (only values of the shape we write are believed), writing it with the
-- backend's attributes (ingress-nginx's: Path, Domain, HttpOnly, Expires, Max-Age, SameSite, Secure), and the
-- choice every sticky request makes. An algorithm supplies find(key) -> index or nil (the cookie's
-- endpoint; nil: it left or the key is not ours) and pick(tried) -> index, key (a new session).
-- Set-Cookie is set from the balancer phase: nginx adds the endpoint's own headers after it.
local ngx_balancer = require("ngx.balancer")
local ring = require("ingressctl.ring")

local ngx_var = ngx.var
local get_last_failure = ngx_balancer.get_last_failure

local M = {}

M.DEFAULT_NAME = "INGRESSCOOKIE"
local KEY = "^%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x$" -- 16 hex digits: what we write

-- Browsers that refuse SameSite=None (or take it for Strict): ingress-nginx's list, from
-- https://www.chromium.org/updates/same-site/incompatible-clients
local function samesite_none_compatible(agent)
    if agent == nil then
        return true
    end
    if agent:find("Chrome/4", 1, true) or agent:find("Chrome/5", 1, true) or agent:find("Chrome/6", 1, true)
        or agent:find("CPU iPhone OS 12", 1, true) or agent:find("iPad; CPU OS 12", 1, true) then
        return false
    end
    return not (agent:find("Macintosh", 1, true) and agent:find("Intel Mac OS X 10_14", 1, true)
        and agent:find("Safari", 1, true) and not agent:find("Chrome", 1, true))
end
M.samesite_none_compatible = samesite_none_compatible

-- The cookie settings of a backend (validated by the configuration API), with defaults.
function M.settings(backend)
    local cookie = backend and backend.cookie or {}
    return {
        name = cookie.name or M.DEFAULT_NAME,
        variable = "cookie_" .. (cookie.name or M.DEFAULT_NAME),
        path = cookie.path or "/",
        domain = cookie.domain,
        max_age = cookie.max_age,
        expires = cookie.expires,
        samesite = cookie.samesite,
        conditional_samesite_none = cookie.conditional_samesite_none == true,
        secure = cookie.secure,
        change_on_failure = cookie.change_on_failure == true,
    }
end

-- A new session key: 16 hex digits.
function M.new_key()
    return string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
end

-- The Set-Cookie value for key.
function M.header(cookie, key)
    local parts = { cookie.name .. "=" .. key, "Path=" .. cookie.path }
    if cookie.domain then
        parts[#parts + 1] = "Domain=" .. cookie.domain
    end
    if cookie.expires then
        parts[#parts + 1] = "Expires=" .. ngx.cookie_time(ngx.time() + cookie.expires)
    end
    if cookie.max_age then
        parts[#parts + 1] = "Max-Age=" .. cookie.max_age
    end
    local samesite = cookie.samesite
    if samesite == "None" and cookie.conditional_samesite_none
        and not samesite_none_compatible(ngx_var.http_user_agent) then
        samesite = nil
    end
    if samesite then
        parts[#parts + 1] = "SameSite=" .. samesite
    end
    local secure = cookie.secure
    if secure == nil then
        secure = ngx_var.https == "on"
    end
    if secure then
        parts[#parts + 1] = "Secure"
    end
    parts[#parts + 1] = "HttpOnly"
    return table.concat(parts, "; ")
end

-- The choice of a sticky request: the cookie's endpoint when it has one; otherwise (no cookie, a
-- cookie that is not ours, an endpoint that left: re-pinned) a new session with a new cookie. A retry
-- after a failure goes to an endpoint not tried yet; with change_on_failure, as a new session.
-- Returns the index of the endpoint.
local function choose(instance)
    local cookie = instance.cookie
    local key = ngx_var[cookie.variable]
    local index = nil
    if key and key:match(KEY) then
        index = instance:find(key)
    end
    local failed = get_last_failure() ~= nil
    if index and not failed then
        return index
    end
    local tried = failed and ring.tried() or nil
    if index and not cookie.change_on_failure then
        return ring.other(instance.ids, index, tried) -- this request only: the session stays
    end
    local new_key
    index, new_key = instance:pick(tried)
    ngx.header["Set-Cookie"] = M.header(cookie, new_key)
    return index
end

-- The sticky algorithms' balance(): address, port.
function M.balance(instance)
    local peer = instance.peers[choose(instance)]
    return peer[1], peer[2]
end

return M
