-- ingressctl.monitor: per-route request metrics (the ConfigMap's enable-metrics).
--
-- Each location sets $ingressctl_route to a short id of its rule (the controller knows which
-- namespace, Ingress, host, path and Service it stands for). log() runs in the log phase of
-- every request and adds it to a table in this worker, keyed by route id and status class:
-- no shared-dict access, no string building per request. A timer flushes the table every
-- FLUSH_INTERVAL seconds into the ingressctl_metrics shared dict with incr (one key per route,
-- class and field, only for fields that changed), and the controller reads the dict's totals
-- through GET /configuration/metrics on the unix socket.
--
-- The totals only grow while the nginx master lives (the dict survives reloads: SIGHUP); a
-- worker that exits (reload, worker_shutdown_timeout) flushes what it holds first, and requests
-- it logs while exiting go to the dict directly. A new master starts a new dict and a new epoch;
-- the controller adds what it reads as differences, so its counters never go down.
--
-- Record layout per (route, class), all numbers: COUNT, REQUEST_BYTES, RESPONSE_BYTES,
-- DURATION_SUM, UPSTREAM_COUNT, UPSTREAM_SUM, then #BUCKETS request-duration bucket counts and
-- #BUCKETS upstream-response-time bucket counts. A bucket field counts the values in
-- (BUCKETS[i-1], BUCKETS[i]] (not cumulative: the controller sums them up); values above the last
-- bound are in the count only (the +Inf bucket).
local cjson = require("cjson.safe")

local ngx = ngx
local var = ngx.var
local now = ngx.now
local req_start = ngx.req.start_time
local exiting = ngx.worker.exiting
local tonumber = tonumber
local pairs = pairs

local M = {}

local DICT_NAME = "ingressctl_metrics"
local FLUSH_INTERVAL = 1 -- seconds

-- ingress-nginx's --time-buckets default (Prometheus' DefBuckets), in seconds.
local BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
local NB = #BUCKETS
local COUNT, REQUEST_BYTES, RESPONSE_BYTES, DURATION_SUM, UPSTREAM_COUNT, UPSTREAM_SUM = 1, 2, 3, 4, 5, 6
local DURATION0 = 6 -- DURATION0 + i: request duration bucket i
local UPSTREAM0 = 6 + NB -- UPSTREAM0 + i: upstream response time bucket i
local FIELDS = 6 + 2 * NB

M.BUCKETS = BUCKETS
M.FIELDS = FIELDS

local pending = {} -- route id -> status class (1..5) -> record

local function bucket(value)
    for i = 1, NB do
        if value <= BUCKETS[i] then
            return i
        end
    end
    return nil
end

M.bucket = bucket

local function new_record()
    local record = {}
    for i = 1, FIELDS do
        record[i] = 0
    end
    return record
end

-- $upstream_response_time: one number, or several ("0.002, 0.004" for retries, " : " across
-- internal redirects): their sum is the time spent waiting for endpoints. "-" or nil: none.
local function upstream_time(text)
    if not text then
        return nil
    end
    local value = tonumber(text)
    if value then
        return value
    end
    local sum, found = 0, false
    for number in text:gmatch("%d+%.?%d*") do
        sum = sum + tonumber(number)
        found = true
    end
    return found and sum or nil
end

M.upstream_time = upstream_time

local function flush()
    local dict = ngx.shared[DICT_NAME]
    local batch = pending
    pending = {}
    for route, classes in pairs(batch) do
        for class, record in pairs(classes) do
            local prefix = "r:" .. route .. ":" .. class .. ":"
            for i = 1, FIELDS do
                local value = record[i]
                if value ~= 0 then
                    local _, err = dict:incr(prefix .. i, value, 0)
                    if err then
                        ngx.log(ngx.WARN, "ingressctl metrics: ", err, " (", DICT_NAME, ")")
                        return
                    end
                end
            end
        end
    end
end
M.flush = flush

function M.log()
    local route = var.ingressctl_route
    if not route or route == "" then
        return -- not a route: the configuration API, the no-endpoints servers, server redirects
    end
    local status = ngx.status
    local class = (status - status % 100) / 100
    if class < 1 or class > 5 then
        class = 5 -- (never seen: nginx answers with a real status); keeps the labels bounded
    end
    local classes = pending[route]
    if not classes then
        classes = {}
        pending[route] = classes
    end
    local record = classes[class]
    if not record then
        record = new_record()
        classes[class] = record
    end
    record[COUNT] = record[COUNT] + 1
    record[REQUEST_BYTES] = record[REQUEST_BYTES] + (tonumber(var.request_length) or 0)
    record[RESPONSE_BYTES] = record[RESPONSE_BYTES] + (tonumber(var.bytes_sent) or 0)
    local duration = now() - req_start()
    if duration < 0 then
        duration = 0
    end
    record[DURATION_SUM] = record[DURATION_SUM] + duration
    local i = bucket(duration)
    if i then
        record[DURATION0 + i] = record[DURATION0 + i] + 1
    end
    local upstream = upstream_time(var.upstream_response_time)
    if upstream then
        record[UPSTREAM_COUNT] = record[UPSTREAM_COUNT] + 1
        record[UPSTREAM_SUM] = record[UPSTREAM_SUM] + upstream
        i = bucket(upstream)
        if i then
            record[UPSTREAM0 + i] = record[UPSTREAM0 + i] + 1
        end
    end
    if exiting() then
        flush() -- the flush timer may have run its last time already
    end
end

-- init_by_lua (the master, at start and at each reload): the dict's epoch, set once per master.
function M.init()
    local dict = ngx.shared[DICT_NAME]
    dict:add("epoch", string.format("%d-%d", now() * 1000, ngx.worker.pid()))
end

-- Also when premature: the worker is exiting and this is its last chance.
local function tick(_premature)
    flush()
end

function M.init_worker()
    local ok, err = ngx.timer.every(FLUSH_INTERVAL, tick)
    if not ok then
        ngx.log(ngx.ERR, "ingressctl metrics: cannot start the flush timer: ", err)
    end
end

-- GET /configuration/metrics: {"epoch","buckets","fields","routes":{"<route>:<class>":[FIELDS numbers]}},
-- the dict's totals (this worker's pending counts flushed first; other workers' arrive within
-- FLUSH_INTERVAL).
function M.call()
    if ngx.req.get_method() ~= "GET" then
        ngx.status = 405
        ngx.say('{"error":"GET only"}')
        return
    end
    flush()
    local dict = ngx.shared[DICT_NAME]
    local routes = {}
    for _, key in ipairs(dict:get_keys(0)) do
        local route, class, field = key:match("^r:([^:]+):(%d):(%d+)$")
        if route then
            local name = route .. ":" .. class
            local record = routes[name]
            if not record then
                record = new_record()
                routes[name] = record
            end
            record[tonumber(field)] = dict:get(key) or 0
        end
    end
    ngx.header["Content-Type"] = "application/json"
    ngx.say(cjson.encode({
        epoch = dict:get("epoch") or "",
        buckets = BUCKETS,
        fields = FIELDS,
        routes = routes, -- an empty table encodes as {}
    }))
end

return M
