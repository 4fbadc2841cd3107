-- ingressctl.configuration: the configuration API on the unix socket.
-- POST /configuration/backends stores a validated backends document in the shared dict and bumps
-- an integer version (incr, never a timestamp); GET returns the version and the document.
-- Invalid JSON or shape answers 400 and keeps the backends that were there.
local cjson = require("cjson.safe")

local dict = ngx.shared.ingressctl
local M = {}

local MAX_PORT = 65535

local function valid_ipv4(address)
    local a, b, c, d = address:match("^(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)$")
    if not a then
        return false
    end
    for _, octet in ipairs({ a, b, c, d }) do
        if tonumber(octet) > 255 then
            return false
        end
    end
    return true
end

local function valid_address(address)
    if type(address) ~= "string" then
        return false
    end
    if valid_ipv4(address) then
        return true
    end
    return #address <= 45 and address:find(":", 1, true) ~= nil and address:match("^[%x:%.]+$") ~= nil
end

local function valid_name(name)
    return type(name) == "string" and #name <= 512 and name:match("^[a-z0-9][a-z0-9.%-]*/[a-z0-9][a-z0-9%-]*:[a-z0-9%-]+$") ~= nil
end

-- Returns true, or nil and a message naming the bad field.
function M.validate(doc)
    if type(doc) ~= "table" or type(doc.backends) ~= "table" then
        return nil, "body must be a JSON object with a 'backends' array"
    end
    local seen = {}
    for i, backend in ipairs(doc.backends) do
        local where = "backends[" .. (i - 1) .. "]"
        if type(backend) ~= "table" then
            return nil, where .. " must be an object"
        end
        if not valid_name(backend.name) then
            return nil, where .. ".name must look like namespace/service:port"
        end
        if seen[backend.name] then
            return nil, where .. ".name is a duplicate"
        end
        seen[backend.name] = true
        if type(backend.endpoints) ~= "table" then
            return nil, where .. ".endpoints must be an array"
        end
        for j, endpoint in ipairs(backend.endpoints) do
            local ewhere = where .. ".endpoints[" .. (j - 1) .. "]"
            if type(endpoint) ~= "table" or not valid_address(endpoint.address) then
                return nil, ewhere .. ".address must be an IP address"
            end
            local port = endpoint.port
            if type(port) ~= "number" or port ~= math.floor(port) or port < 1 or port > MAX_PORT then
                return nil, ewhere .. ".port must be an integer from 1 to 65535"
            end
        end
    end
    return true
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

function M.call()
    local method = ngx.req.get_method()
    if method == "GET" then
        ngx.header.content_type = "application/json"
        ngx.print('{"version":', dict:get("version") or 0, ',"document":', dict:get("backends") or "null", "}\n")
        return
    end
    if method ~= "POST" then
        return respond(405, { error = "use GET or POST" })
    end
    local body = read_body()
    if not body then
        return respond(400, { error = "empty body" })
    end
    local doc, err = cjson.decode(body)
    if not doc then
        return respond(400, { error = "invalid JSON: " .. tostring(err) })
    end
    local ok, why = M.validate(doc)
    if not ok then
        return respond(400, { error = why })
    end
    local stored, serr = dict:set("backends", body)
    if not stored then
        return respond(500, { error = "could not store backends: " .. tostring(serr) })
    end
    local version = dict:incr("version", 1, 0)
    return respond(201, { version = version })
end

return M
