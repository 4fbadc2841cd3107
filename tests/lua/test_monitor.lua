-- ingressctl.monitor's pure parts: histogram buckets (upper bounds inclusive, as Prometheus' le)
-- and $upstream_response_time with retries and internal redirects.
local monitor = require("ingressctl.monitor")
local eq = require("runner").eq

local T = {}

function T.bucket_bounds_are_inclusive()
    eq(monitor.bucket(0), 1, "0 s")
    eq(monitor.bucket(0.005), 1, "on the first bound")
    eq(monitor.bucket(0.0051), 2, "just above it")
    eq(monitor.bucket(10), #monitor.BUCKETS, "on the last bound")
    eq(monitor.bucket(10.001), nil, "above the last bound: +Inf only")
end

function T.upstream_time_sums_tries_and_redirects()
    eq(monitor.upstream_time(nil), nil, "no upstream")
    eq(monitor.upstream_time("-"), nil, "a dash")
    eq(monitor.upstream_time("0.004"), 0.004, "one try")
    eq(string.format("%.3f", monitor.upstream_time("0.002, 0.004")), "0.006", "two tries")
    eq(string.format("%.3f", monitor.upstream_time("0.001, 0.002 : 0.003")), "0.006", "an internal redirect")
end

function T.record_layout()
    eq(monitor.FIELDS, 6 + 2 * #monitor.BUCKETS, "fields")
end

return T
