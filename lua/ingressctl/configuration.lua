-- ingressctl.configuration: the configuration API on the unix socket, and the only writer of the
-- backends store (layout in backends.lua: one shared-dict entry per backend, an integer version
-- bumped with incr, never a timestamp, and a log of the names each version changed).
--   POST  /configuration/backends  full replace, {"backends":[...]}: stores and logs only the
--                                  backends that differ from what is stored, removes the others
--   PATCH /configuration/backends  delta, {"epoch":e,"base":v,"upsert":[...],"remove":[names]}:
--                                  409 unless the store is at epoch e and version v (the caller
--                                  cannot be sure of the state then: it sends a full replace)
--   GET   /configuration/backends  {"version","epoch","dict","document"}; with ?worker, the
--                                  answering worker's own view after its sync (pid, version,
--                                  stats, endpoints; ?worker=brief: without the endpoints)
-- Both writes answer 201 {"version","epoch","changed"}. Invalid JSON or shape (an object where an array
-- belongs, an unknown field, an address that is not an IP literal) answers 400 with the
-- reason and changes nothing; a full dict answers 507 (what was written is logged, so workers
-- still follow the store).
local cjson = require("cjson.safe")

local backends = require("ingressctl.backends")
local balancer = require("ingressctl.balancer")
local hashkey = require("ingressctl.hashkey")

local dict = ngx.shared.ingressctl
local M = {}

local MAX_PORT = 65535
local LOCK_TTL = 10 -- seconds: a writer that died holding the lock holds it no longer than this
local LOCK_WAIT = 5 -- seconds a writer waits for another one

-- Addresses: the same grammar as Python's ipaddress.ip_address (what translate accepts), without
-- zone indexes: dotted-quad IPv4 with no leading zeros, IPv6 of eight hextets with at most one "::"
-- and an optional dotted-quad tail.
local function valid_ipv4(address)
    local octets = { address:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
    if #octets ~= 4 then
        return false
    end
    for _, octet in ipairs(octets) do
        if #octet > 3 or (#octet > 1 and octet:sub(1, 1) == "0") or tonumber(octet) > 255 then
            return false
        end
    end
    return true
end

local function valid_ipv6(address)
    if #address > 45 or not address:find(":", 1, true) then
        return false
    end
    local parts = {}
    for part in (address .. ":"):gmatch("([^:]*):") do
        parts[#parts + 1] = part
    end
    local hextets = #parts
    if parts[#parts]:find(".", 1, true) then
        if not valid_ipv4(parts[#parts]) then
            return false
        end
        hextets = hextets + 1 -- the dotted quad stands for two hextets
    end
    if #parts < 3 or hextets > 9 then
        return false
    end
    local skip
    for i = 2, #parts - 1 do
        if parts[i] == "" then
            if skip then
                return false -- a second "::"
            end
            skip = i
        end
    end
    for i, part in ipairs(parts) do
        local tail = i == #parts and hextets > #parts
        if part ~= "" and not tail and not part:match("^%x%x?%x?%x?$") then
            return false
        end
    end
    if skip then
        local high, low = skip - 1, hextets - skip
        if parts[1] == "" then
            high = high - 1
            if high > 0 then
                return false -- a single leading ":"
            end
        end
        if parts[#parts] == "" then
            low = low - 1
            if low > 0 then
                return false -- a single trailing ":"
            end
        end
        return high + low < 8
    end
    return hextets == 8 and parts[1] ~= "" and parts[#parts] ~= ""
end

local function valid_address(address)
    return type(address) == "string" and (valid_ipv4(address) or valid_ipv6(address))
end

-- cjson decodes [] and {} alike: an empty table is an empty array; any other table must have
-- exactly the keys 1..n.
local function is_array(value)
    if type(value) ~= "table" then
        return false
    end
    local count, largest = 0, 0
    for key in pairs(value) do
        if type(key) ~= "number" or key < 1 or key ~= math.floor(key) then
            return false
        end
        count = count + 1
        largest = math.max(largest, key)
    end
    return largest == count
end

-- An object (a table with string keys only) whose keys are all in `allowed`; returns the first
-- unknown key as the second value.
local function is_object(value, allowed)
    if type(value) ~= "table" then
        return false
    end
    for key in pairs(value) do
        if type(key) ~= "string" then
            return false
        end
        if not allowed[key] then
            return false, key
        end
    end
    return true
end

local BACKEND_KEYS = {
    name = true, algorithm = true, endpoints = true, hash_by = true, subset_size = true, cookie = true, canary = true,
}
local COOKIE_KEYS = {
    name = true, path = true, domain = true, max_age = true, expires = true, samesite = true,
    conditional_samesite_none = true, secure = true, change_on_failure = true,
}
local COOKIE_FLAGS = { "conditional_samesite_none", "secure", "change_on_failure" }
local SAMESITE = { None = true, Lax = true, Strict = true }
local MAX_COOKIE_SECONDS = 315360000
local ENDPOINT_KEYS = { address = true, port = true }

-- Names are what translate makes: namespace (a DNS-1123 subdomain) "/" Service (a DNS-1123 label)
-- ":" the Service port's number or name.
local function valid_label(label, longest)
    return #label <= longest and (label:match("^[a-z0-9]$") or label:match("^[a-z0-9][a-z0-9%-]*[a-z0-9]$")) ~= nil
end

local function valid_subdomain(value)
    if #value > 253 then
        return false
    end
    for label in (value .. "."):gmatch("([^.]*)%.") do
        if not valid_label(label, 63) then
            return false
        end
    end
    return true
end

local valid_name
function valid_name(name)
    if type(name) ~= "string" then
        return false
    end
    -- a route with a canary Ingress: "<main name>~<canary name>~<canary Ingress namespace/name>"
    local main, alternative, namespace, ingress = name:match("^([^~]*)~([^~]*)~([^~/]*)/([^~/]*)$")
    if main then
        return valid_name(main) and valid_name(alternative) and valid_label(namespace, 63) and valid_subdomain(ingress)
    end
    local namespace, service, port = name:match("^([^/]*)/([^:]*):(.*)$")
    if namespace == nil or not valid_subdomain(namespace) or not valid_label(service, 63) then
        return false
    end
    -- service-upstream backends (the Service's cluster IP) are named ":service-upstream-<port>"
    local upstream = port:match("^service%-upstream%-([1-9]%d?%d?%d?%d?)$")
    if upstream then
        return tonumber(upstream) <= MAX_PORT
    end
    return valid_label(port, 15) and not port:find("--", 1, true)
end

local function valid_integer(value, low, high)
    return type(value) == "number" and value == math.floor(value) and value >= low and value <= high
end

local function valid_port(port)
    return valid_integer(port, 1, MAX_PORT)
end

-- The same grammar as translate's (ingressctl.translate.annotations.balancing).
local function valid_cookie_name(name)
    return type(name) == "string" and #name <= 64 and name:match("^[%w_%.%-]+$") ~= nil
end

local function valid_cookie_path(path)
    return type(path) == "string" and #path <= 256 and path:match("^/[%w%._~!%*%+,=:@/%%%-]*$") ~= nil
end

local function valid_cookie_domain(domain)
    return type(domain) == "string" and #domain <= 254 and domain:match("^%.?[%l%d][%l%d%.%-]*$") ~= nil
end

-- The affinity cookie's settings. Returns true, or nil and a message naming the bad field.
local function validate_cookie(cookie, where)
    local object, unknown = is_object(cookie, COOKIE_KEYS)
    if not object then
        return nil, where .. (unknown and ("." .. unknown .. " is not a cookie field") or " must be an object")
    end
    if cookie.name ~= nil and not valid_cookie_name(cookie.name) then
        return nil, where .. ".name must be 1 to 64 letters, digits and _.-"
    end
    if cookie.path ~= nil and not valid_cookie_path(cookie.path) then
        return nil, where .. ".path must be a plain path"
    end
    if cookie.domain ~= nil and not valid_cookie_domain(cookie.domain) then
        return nil, where .. ".domain must be a host name"
    end
    for _, field in ipairs({ "max_age", "expires" }) do
        if cookie[field] ~= nil and not valid_integer(cookie[field], 1, MAX_COOKIE_SECONDS) then
            return nil, where .. "." .. field .. " must be an integer from 1 to " .. MAX_COOKIE_SECONDS
        end
    end
    if cookie.samesite ~= nil and not SAMESITE[cookie.samesite] then
        return nil, where .. ".samesite must be None, Lax or Strict"
    end
    for _, field in ipairs(COOKIE_FLAGS) do
        if cookie[field] ~= nil and type(cookie[field]) ~= "boolean" then
            return nil, where .. "." .. field .. " must be true or false"
        end
    end
    return true
end

-- The algorithm's settings of a backend. Returns true, or nil and a message naming the bad field.
local function validate_settings(backend, where)
    if backend.hash_by ~= nil then
        local parts, why = hashkey.parse(backend.hash_by)
        if not parts then
            return nil, where .. ".hash_by " .. why
        end
    end
    if backend.subset_size ~= nil and not valid_integer(backend.subset_size, 1, 64) then
        return nil, where .. ".subset_size must be an integer from 1 to 64"
    end
    if backend.cookie ~= nil then
        return validate_cookie(backend.cookie, where .. ".cookie")
    end
    return true
end

local CANARY_KEYS = {
    main = true, backend = true, header = true, header_value = true, header_pattern = true, cookie = true,
    weight = true, weight_total = true,
}
local MAX_WEIGHT = 1000000

local function valid_text(value, pattern, longest)
    return value == nil or (type(value) == "string" and #value <= longest and value:match(pattern) ~= nil)
end

-- A canary policy (ingressctl.canary), what translate makes of the canary-* annotations: the
-- same character sets, and a pattern PCRE compiles. Returns true, or nil and a message.
local function validate_canary(canary, name, where)
    local object, unknown = is_object(canary, CANARY_KEYS)
    if not object then
        return nil, where .. (unknown and ("." .. unknown .. " is not a canary field") or " must be an object")
    end
    if not valid_name(canary.main) or not valid_name(canary.backend)
        or name:sub(1, #canary.main + #canary.backend + 2) ~= canary.main .. "~" .. canary.backend .. "~"
    then
        return nil, where .. ".main and .backend must be the backends the name starts with"
    end
    if not valid_text(canary.header, "^[%w%-]+$", 64) then
        return nil, where .. ".header must be a header name"
    end
    if not valid_text(canary.header_value, "^[%w%._~!&()*+,=:@/?%%|%- ]+$", 256) then
        return nil, where .. ".header_value has a character that is not accepted"
    end
    if not valid_text(canary.header_pattern, "^[%w !%%&,/:<=>@_~%-%.%^%$|*+?()%[%]\\]+$", 256) then
        return nil, where .. ".header_pattern has a character that is not accepted"
    end
    if canary.header_pattern then
        local _, _, err = ngx.re.find("", canary.header_pattern, "jo")
        if err then
            return nil, where .. ".header_pattern is not a regular expression: " .. err
        end
    end
    if not valid_text(canary.cookie, "^[%w_%.%-]+$", 64) then
        return nil, where .. ".cookie must be a cookie name"
    end
    if not valid_integer(canary.weight_total, 1, MAX_WEIGHT) or not valid_integer(canary.weight, 0, canary.weight_total) then
        return nil, where .. ".weight and .weight_total must be integers, 0 <= weight <= weight_total <= " .. MAX_WEIGHT
    end
    return true
end

-- Returns true, or nil and a message naming the bad field.
local function validate_backend(backend, where)
    local object, unknown = is_object(backend, BACKEND_KEYS)
    if not object then
        return nil, where .. (unknown and ("." .. unknown .. " is not a backend field") or " must be an object")
    end
    if not valid_name(backend.name) then
        return nil, where .. ".name must look like namespace/service:port"
    end
    if backend.algorithm ~= nil and (type(backend.algorithm) ~= "string" or balancer.ALGORITHMS[backend.algorithm] == nil) then
        return nil, where .. ".algorithm must be a registered algorithm"
    end
    local settings, why = validate_settings(backend, where)
    if not settings then
        return nil, why
    end
    if not is_array(backend.endpoints) then
        return nil, where .. ".endpoints must be an array"
    end
    if backend.canary ~= nil then
        local ok, err = validate_canary(backend.canary, backend.name, where .. ".canary")
        if not ok then
            return nil, err
        end
    elseif backend.name:find("~", 1, true) then
        return nil, where .. ".canary must be set in a backend named main~canary~ingress"
    end
    for j, endpoint in ipairs(backend.endpoints) do
        local ewhere = where .. ".endpoints[" .. (j - 1) .. "]"
        object, unknown = is_object(endpoint, ENDPOINT_KEYS)
        if not object then
            return nil, ewhere .. (unknown and ("." .. unknown .. " is not an endpoint field") or " must be an object")
        end
        if not valid_address(endpoint.address) then
            return nil, ewhere .. ".address must be an IP address"
        end
        if not valid_port(endpoint.port) then
            return nil, ewhere .. ".port must be an integer from 1 to 65535"
        end
    end
    return true
end

-- A list of backends under `field` (names unique within `seen`). Returns true, or nil and a
-- message naming the bad field.
local function validate_backends(list, field, seen)
    if not is_array(list) then
        return nil, field .. " must be an array"
    end
    for i, backend in ipairs(list) do
        local where = field .. "[" .. (i - 1) .. "]"
        local ok, err = validate_backend(backend, where)
        if not ok then
            return nil, err
        end
        if seen[backend.name] then
            return nil, where .. ".name is a duplicate"
        end
        seen[backend.name] = true
    end
    return true
end

local DOCUMENT_KEYS = { backends = true }
local DELTA_KEYS = { epoch = true, base = true, upsert = true, remove = true }

-- A full document. Returns true, or nil and a message naming the bad field.
function M.validate(doc)
    local object, unknown = is_object(doc, DOCUMENT_KEYS)
    if not object or doc.backends == nil then
        return nil, "body must be a JSON object with a 'backends' array"
            .. (unknown and (" and nothing else (not '" .. unknown .. "')") or "")
    end
    return validate_backends(doc.backends, "backends", {})
end

-- A delta. Returns true, or nil and a message naming the bad field.
function M.validate_delta(doc)
    local object, unknown = is_object(doc, DELTA_KEYS)
    if not object then
        return nil, "body must be a JSON object with epoch, base, upsert and remove"
            .. (unknown and (" (not '" .. unknown .. "')") or "")
    end
    if type(doc.epoch) ~= "string" then
        return nil, "epoch must be the store's epoch (a string)"
    end
    if type(doc.base) ~= "number" or doc.base ~= math.floor(doc.base) or doc.base < 0 or doc.base == math.huge then
        return nil, "base must be the version the delta applies to (an integer)"
    end
    local seen = {}
    local ok, err = validate_backends(doc.upsert or {}, "upsert", seen)
    if not ok then
        return nil, err
    end
    if not is_array(doc.remove or {}) then
        return nil, "remove must be an array"
    end
    for i, name in ipairs(doc.remove or {}) do
        local where = "remove[" .. (i - 1) .. "]"
        if not valid_name(name) then
            return nil, where .. " must look like namespace/service:port"
        end
        if seen[name] then
            return nil, where .. " is a duplicate"
        end
        seen[name] = true
    end
    return true
end

-- The algorithm's settings of a validated backend, in a fixed order (validation allows no quote or
-- backslash in them), each followed by a comma.
local COOKIE_ORDER = {
    "name", "path", "domain", "max_age", "expires", "samesite", "conditional_samesite_none", "secure", "change_on_failure",
}

local function encode_settings(backend)
    local out = {}
    if backend.hash_by ~= nil then
        out[#out + 1] = '"hash_by":"' .. backend.hash_by .. '",'
    end
    if backend.subset_size ~= nil then
        out[#out + 1] = '"subset_size":' .. backend.subset_size .. ","
    end
    local cookie = backend.cookie
    if cookie ~= nil then
        local fields = {}
        for _, field in ipairs(COOKIE_ORDER) do
            local value = cookie[field]
            if type(value) == "string" then
                fields[#fields + 1] = '"' .. field .. '":"' .. value .. '"'
            elseif value ~= nil then
                fields[#fields + 1] = '"' .. field .. '":' .. tostring(value)
            end
        end
        out[#out + 1] = '"cookie":{' .. table.concat(fields, ",") .. "},"
    end
    return table.concat(out)
end

-- The stored form of a validated backend: fixed key order, so that equal backends store equal
-- text. No escaping is needed: validation allows no quote or backslash in any of these fields.
local function encode_backend(backend)
    local parts = {}
    for i, endpoint in ipairs(backend.endpoints) do
        -- port is an integer (validated): LuaJIT writes it without a fraction
        parts[i] = '{"address":"' .. endpoint.address .. '","port":' .. endpoint.port .. "}"
    end
    local algorithm = backend.algorithm and ('"algorithm":"' .. backend.algorithm .. '",') or ""
    local canary = ""
    if backend.canary then
        -- strings through cjson (a pattern may hold a backslash), keys in a fixed order
        local c, fields = backend.canary, {}
        for _, key in ipairs({ "main", "backend", "header", "header_value", "header_pattern", "cookie" }) do
            if c[key] ~= nil then
                fields[#fields + 1] = '"' .. key .. '":' .. cjson.encode(c[key])
            end
        end
        fields[#fields + 1] = '"weight":' .. c.weight
        fields[#fields + 1] = '"weight_total":' .. c.weight_total
        canary = ',"canary":{' .. table.concat(fields, ",") .. "}"
    end
    return '{"name":"' .. backend.name .. '",' .. algorithm .. encode_settings(backend) .. '"endpoints":['
        .. table.concat(parts, ",") .. "]" .. canary .. "}"
end

local function epoch()
    local current = dict:get("epoch")
    if current then
        return current
    end
    local made = string.format("%d-%d-%d", ngx.now() * 1000, ngx.worker.pid(), math.random(1, 1e9))
    dict:safe_add("epoch", made) -- another worker may have made one first: its token wins
    return dict:get("epoch")
end

local function lock()
    local token = ngx.worker.pid() .. "-" .. math.random(1, 1e9)
    local deadline = ngx.now() + LOCK_WAIT
    while true do
        local ok, err = dict:safe_add("lock", token, LOCK_TTL)
        if ok then
            return token
        end
        if err ~= "exists" or ngx.now() > deadline then
            return nil, "could not lock the store: " .. tostring(err)
        end
        ngx.sleep(0.001)
    end
end

local function unlock(token)
    if dict:get("lock") == token then
        dict:delete("lock")
    end
end

-- Writes changes (a list of {name, text or false to remove}) and publishes them as the next
-- version. Called under the lock; never yields. Returns the new version, or nil, the new version
-- and why when the dict ran out of memory (what was written is still logged and published).
local function commit(changes)
    local names, failure = {}, nil
    for i, change in ipairs(changes) do
        local key = backends.key(change[1])
        if change[2] then
            -- safe_set never evicts another entry to make room: an evicted backend would vanish.
            local ok, err = dict:safe_set(key, change[2])
            if not ok then
                failure = "could not store " .. change[1] .. ": " .. tostring(err)
                break
            end
        else
            dict:delete(key)
        end
        names[i] = change[1]
    end
    local next_version = (dict:get("version") or 0) + 1
    -- Without its log entry, workers rebuild from the entries: slower, still right.
    local logged = #names > backends.LOG_MAX_NAMES and backends.REBUILD or table.concat(names, "\n")
    dict:safe_set(backends.log_key(next_version), logged)
    dict:delete(backends.log_key(next_version - backends.LOG_KEEP))
    local version = dict:incr("version", 1, 0)
    if failure then
        return nil, version, failure
    end
    return version
end

local function stored_names()
    local names = {}
    local prefix = #backends.PREFIX
    for _, key in ipairs(dict:get_keys(0)) do
        if key:sub(1, prefix) == backends.PREFIX then
            names[key:sub(prefix + 1)] = true
        end
    end
    return names
end

-- Full replace of a validated document: changes only what differs. Never yields.
local function replace_locked(doc)
    local changes = {}
    local present = stored_names()
    for _, backend in ipairs(doc.backends) do
        local text = encode_backend(backend)
        present[backend.name] = nil
        if dict:get(backends.key(backend.name)) ~= text then
            changes[#changes + 1] = { backend.name, text }
        end
    end
    for name in pairs(present) do
        changes[#changes + 1] = { name, false }
    end
    local version, failed_version, why = commit(changes)
    return version, failed_version, why, #changes
end

-- Delta of a validated document: 409 unless the store is where the caller thinks. Never yields.
local function delta_locked(doc)
    local current = dict:get("version") or 0
    local store_epoch = epoch()
    if doc.epoch ~= store_epoch or doc.base ~= current then
        return nil, nil, "conflict", 0, current, store_epoch
    end
    local changes = {}
    for _, backend in ipairs(doc.upsert or {}) do
        changes[#changes + 1] = { backend.name, encode_backend(backend) }
    end
    for _, name in ipairs(doc.remove or {}) do
        changes[#changes + 1] = { name, false }
    end
    local version, failed_version, why = commit(changes)
    return version, failed_version, why, #changes
end

-- For tests: the same writes as POST and PATCH, without HTTP. Return the new version, or nil,
-- the status and the reason.
local function write(doc, validator, writer)
    local ok, why = validator(doc)
    if not ok then
        return nil, 400, why
    end
    local token, err = lock()
    if not token then
        return nil, 503, err
    end
    -- The lock is released even if the writer fails (then the error goes on to the caller).
    local called, version, failed_version, failure, changed, current, store_epoch = pcall(writer, doc)
    unlock(token)
    if not called then
        error(version, 0)
    end
    if failure == "conflict" then
        return nil, 409, "the store is at epoch " .. store_epoch .. " version " .. current
            .. ", not epoch " .. tostring(doc.epoch) .. " version " .. tostring(doc.base)
    end
    if not version then
        return nil, 507, failure .. " (published as version " .. failed_version .. ")"
    end
    return version, changed
end

function M.replace(doc)
    return write(doc, M.validate, replace_locked)
end

function M.delta(doc)
    return write(doc, M.validate_delta, delta_locked)
end

-- The field checks on their own, for the tests that compare them with translate's (Python) ones.
M.valid_address = valid_address
M.valid_name = valid_name
-- Shared with the API's other writer (ingressctl.certificates): one lock, the same checks.
M.lock = lock
M.unlock = unlock
M.valid_subdomain = valid_subdomain
M.is_object = is_object

function M.epoch()
    return epoch()
end

local function respond(status, body)
    ngx.status = status
    ngx.header.content_type = "application/json"
    ngx.say(cjson.encode(body))
    return ngx.exit(status)
end

local function read_body()
    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    if body then
        return body
    end
    local path = ngx.req.get_body_file()
    if not path then
        return nil
    end
    local file = io.open(path, "rb")
    if not file then
        return nil
    end
    body = file:read("*a")
    file:close()
    return body
end

local function document()
    local names = {}
    for name in pairs(stored_names()) do
        names[#names + 1] = name
    end
    table.sort(names)
    local parts = {}
    for i, name in ipairs(names) do
        parts[i] = dict:get(backends.key(name)) or "null"
    end
    return '{"backends":[' .. table.concat(parts, ",") .. "]}"
end

local function worker_view(brief)
    local version, counts = backends.state()
    local view, count = {}, 0
    for name in pairs(counts) do
        count = count + 1
        if not brief then
            local list = backends.endpoints(name)
            -- Debian's lua-cjson has no empty_array_mt: an empty table would encode as {}
            view[name] = (list and #list > 0) and list or cjson.empty_array
        end
    end
    return {
        pid = ngx.worker.pid(),
        version = version or 0,
        count = count,
        backends = next(view) and view or cjson.empty_array,
        stats = backends.stats,
    }
end

function M.call()
    local method = ngx.req.get_method()
    if method == "GET" then
        local worker = ngx.req.get_uri_args().worker
        if worker then
            return respond(200, worker_view(worker == "brief"))
        end
        ngx.header.content_type = "application/json"
        local capacity, free = dict:capacity(), dict:free_space()
        ngx.print('{"version":', dict:get("version") or 0, ',"epoch":"', epoch(), '","dict":{"capacity":', capacity,
            ',"free":', free, '},"document":', document(), "}\n")
        return
    end
    if method ~= "POST" and method ~= "PATCH" then
        return respond(405, { error = "use GET, POST (every backend) or PATCH (changed backends)" })
    end
    local body = read_body()
    if not body or body == "" then
        return respond(400, { error = "empty body" })
    end
    local doc, err = cjson.decode(body)
    if not doc then
        return respond(400, { error = "invalid JSON: " .. tostring(err) })
    end
    local version, status, why = (method == "POST" and M.replace or M.delta)(doc)
    if not version then
        return respond(status, { error = why, version = dict:get("version") or 0, epoch = epoch() })
    end
    return respond(201, { version = version, epoch = epoch(), changed = status })
end

M.respond = respond
M.read_body = read_body

return M
