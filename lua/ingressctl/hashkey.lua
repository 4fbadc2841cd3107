-- ingressctl.hashkey: upstream-hash-by expressions. The grammar is the configuration API's check and
-- translate's (ingressctl.translate.annotations.balancing): fixed text and the variables $remote_addr,
-- $request_uri, $http_<name>, $cookie_<name>, $arg_<name> (also as ${name}); nothing else. compile()
-- turns a valid expression into a function that builds the request's key from ngx.var.
local ngx_var = ngx.var

local M = {}

M.MAX_LENGTH = 256
M.MAX_VARIABLES = 8
local TEXT = "^[%w%._:/@,=~+|%-]+$"

local function known(name)
    return name == "remote_addr" or name == "request_uri"
        or (name:match("^http_[%w_]+$") or name:match("^cookie_[%w_]+$") or name:match("^arg_[%w_]+$")) ~= nil
end

-- The parts of an expression: a list of {true, variable name} and {false, text}, or nil and why.
function M.parse(expression)
    if type(expression) ~= "string" or #expression == 0 or #expression > M.MAX_LENGTH then
        return nil, "must be a string of 1 to " .. M.MAX_LENGTH .. " characters"
    end
    local parts, variables, position = {}, 0, 1
    while position <= #expression do
        local name, after
        if expression:sub(position, position + 1) == "${" then
            name, after = expression:match("^%${([%w_]+)}()", position)
        elseif expression:sub(position, position) == "$" then
            name, after = expression:match("^%$([%w_]+)()", position)
        end
        if name then
            if not known(name) then
                return nil, "$" .. name .. " is not one of $remote_addr, $request_uri, $http_*, $cookie_*, $arg_*"
            end
            variables = variables + 1
            parts[#parts + 1] = { true, name }
            position = after
        else
            local stop = expression:find("$", position, true) or (#expression + 1)
            local text = expression:sub(position, stop - 1)
            if text == "" or not text:match(TEXT) then
                return nil, "has characters other than letters, digits and ._:/@,=~+|- outside variables"
            end
            parts[#parts + 1] = { false, text }
            position = stop
        end
    end
    if variables == 0 or variables > M.MAX_VARIABLES then
        return nil, "must use 1 to " .. M.MAX_VARIABLES .. " variables"
    end
    return parts
end

-- A function returning the request's key for a valid expression (nil if it is not valid).
function M.compile(expression)
    local parts = M.parse(expression)
    if parts == nil then
        return nil
    end
    if #parts == 1 then
        local name = parts[1][2]
        return function()
            return ngx_var[name] or ""
        end
    end
    return function()
        local out = {}
        for i, part in ipairs(parts) do
            out[i] = part[1] and (ngx_var[part[2]] or "") or part[2]
        end
        return table.concat(out)
    end
end

return M
