-- ingressctl.certificates: TLS certificates served without a reload, and the only writer of their
-- store (the shared dict ingressctl_certificates, which only the nginx processes map):
--   "cert:<name>"  a certificate chain and its private key as one PEM; <name> is the controller's
--                  content hash of it, so the PEM under a name never changes
--   "host:<name>"  which certificate a server name gets: an exact host, or "*.<domain>" (one label)
--   "default"      the certificate for every other name, and for clients that send no SNI
-- serve() runs in ssl_client_hello_by_lua, in the default server's SSL context (the one the
-- servers share; a server with its own context runs it in ssl_certificate_by_lua): the client's SNI name exactly, then the wildcard of its first label, then the
-- default. Not ssl_certificate_by_lua: that runs in the server nginx picked by SNI, and the Lua
-- module then wants an SSL context in every server block (one per server: the scale problem of
-- Debian 12's nginx); the ClientHello comes before that pick, and a server without an SSL context
-- of its own keeps the default server's, with the certificate set here. Each worker parses a certificate once (an LRU cache keyed by its name, so a rotation,
-- which is a new name, is never served stale) and sets it on the connection.
-- The API on the configuration socket (the lock and field checks of ingressctl.configuration):
--   POST /configuration/certificates  {"default": name, "hosts": {server name: name},
--        "certificates": {name: PEM}, "ciphers": the ssl_ciphers in use}: the whole map; the
--        certificates the store already holds may be left out. Every certificate sent and not yet
--        held is checked as OpenSSL will use it (parsed; leaf, chain and key allowed at the security
--        level that `ciphers` and the system's OpenSSL configuration set; the key matches): the first
--        refused one answers 400 {"error", "certificate": name} and nothing changes. A name neither
--        sent nor held answers 409 {"missing": [names]} (the controller then sends them all), and
--        so does any name not sent when `ciphers` differs from the last POST's (all are checked again).
--        201 {"stored", "removed", "hosts"}: certificates no name uses any more are removed.
--   GET  /configuration/certificates  {"default", "hosts", "certificates": [names]}: never a PEM.
local ffi = require("ffi")
local cjson = require("cjson.safe")
local lrucache = require("resty.lrucache")
local ssl = require("ngx.ssl")
local clienthello = require("ngx.ssl.clienthello")

local configuration = require("ingressctl.configuration")

local C = ffi.C
local dict = ngx.shared.ingressctl_certificates
local M = {}

M.CACHE_SIZE = 10000 -- parsed certificates each worker keeps (a few KB each)
local MAX_PEM = 1048576
local MAX_HOSTS = 200000
local NAME_LENGTH = 32

local cache = lrucache.new(M.CACHE_SIZE)

ffi.cdef([[
typedef struct ingressctl_ssl_ctx_st ingressctl_SSL_CTX;
const void *TLS_server_method(void);
ingressctl_SSL_CTX *SSL_CTX_new(const void *method);
void SSL_CTX_free(ingressctl_SSL_CTX *ctx);
int SSL_CTX_set_cipher_list(ingressctl_SSL_CTX *ctx, const char *str);
int SSL_CTX_use_certificate(ingressctl_SSL_CTX *ctx, void *x509);
int SSL_CTX_use_PrivateKey(ingressctl_SSL_CTX *ctx, void *pkey);
int SSL_CTX_check_private_key(const ingressctl_SSL_CTX *ctx);
long SSL_CTX_ctrl(ingressctl_SSL_CTX *ctx, int cmd, long larg, void *parg);
int OPENSSL_sk_num(const void *stack);
void *OPENSSL_sk_value(const void *stack, int i);
unsigned long ERR_get_error(void);
void ERR_error_string_n(unsigned long e, char *buf, size_t len);
void ERR_clear_error(void);
]])

local SSL_CTRL_CHAIN_CERT = 89 -- SSL_CTX_add1_chain_cert(ctx, x509) is SSL_CTX_ctrl(ctx, 89, 1, x509)

-- OpenSSL's last error, in nginx's own words ("SSL_CTX_use_certificate() failed (SSL: ...)").
local function openssl_error(call)
    local code = C.ERR_get_error()
    local text = "unknown error"
    if code ~= 0 then
        local buf = ffi.new("char[256]")
        C.ERR_error_string_n(code, buf, 256)
        text = ffi.string(buf)
    end
    C.ERR_clear_error()
    return call .. "() failed (SSL: " .. text .. ")"
end

-- Whether OpenSSL takes the PEM as a server certificate: in a new context with the ciphers in use
-- (SSL_CTX_new applies the system's OpenSSL configuration, and `@SECLEVEL=N` in the ciphers its
-- own level), as nginx would from an ssl_certificate file. Returns true, or nil and the reason.
function M.check(pem, ciphers)
    local chain, err = ssl.parse_pem_cert(pem)
    if not chain then
        return nil, "the certificate cannot be parsed: " .. tostring(err)
    end
    local key
    key, err = ssl.parse_pem_priv_key(pem)
    if not key then
        return nil, "the private key cannot be parsed: " .. tostring(err)
    end
    local ctx = C.SSL_CTX_new(C.TLS_server_method())
    if ctx == nil then
        return nil, openssl_error("SSL_CTX_new")
    end
    ctx = ffi.gc(ctx, C.SSL_CTX_free)
    C.ERR_clear_error()
    local why
    if ciphers and C.SSL_CTX_set_cipher_list(ctx, ciphers) ~= 1 then
        why = openssl_error("SSL_CTX_set_cipher_list")
    elseif C.OPENSSL_sk_num(chain) < 1 then
        why = "the certificate chain is empty"
    elseif C.SSL_CTX_use_certificate(ctx, C.OPENSSL_sk_value(chain, 0)) ~= 1 then
        why = openssl_error("SSL_CTX_use_certificate")
    else
        for i = 1, C.OPENSSL_sk_num(chain) - 1 do
            if C.SSL_CTX_ctrl(ctx, SSL_CTRL_CHAIN_CERT, 1, C.OPENSSL_sk_value(chain, i)) ~= 1 then
                why = openssl_error("SSL_CTX_add1_chain_cert")
                break
            end
        end
        if not why and C.SSL_CTX_use_PrivateKey(ctx, key) ~= 1 then
            why = openssl_error("SSL_CTX_use_PrivateKey")
        end
        if not why and C.SSL_CTX_check_private_key(ctx) ~= 1 then
            why = openssl_error("SSL_CTX_check_private_key")
        end
    end
    C.SSL_CTX_free(ffi.gc(ctx, nil))
    if why then
        return nil, why
    end
    return true
end

local function valid_cert_name(name)
    return type(name) == "string" and #name == NAME_LENGTH and name:match("^[0-9a-f]+$") ~= nil
end

-- What translate's host check accepts (lower-case: the controller sends hosts lower-cased).
local function valid_host(host)
    if type(host) ~= "string" or #host > 253 then
        return false
    end
    if host:sub(1, 2) == "*." then
        host = host:sub(3)
    end
    return host ~= "" and configuration.valid_subdomain(host)
end

local DOCUMENT_KEYS = { default = true, hosts = true, certificates = true, ciphers = true }

M.valid_host = valid_host

-- The document's shape. Returns true, or nil and a message naming the bad field.
function M.validate(doc)
    local object, unknown = configuration.is_object(doc, DOCUMENT_KEYS)
    if not object then
        return nil, "body must be a JSON object with default, hosts, certificates and ciphers"
            .. (unknown and (" (not '" .. unknown .. "')") or "")
    end
    if not valid_cert_name(doc.default) then
        return nil, "default must be a certificate name (32 hex digits)"
    end
    if doc.ciphers ~= nil and (type(doc.ciphers) ~= "string" or #doc.ciphers > 4096
        or not doc.ciphers:match("^[%w%-%+:!@=_.]+$")) then
        return nil, "ciphers must be an OpenSSL cipher list"
    end
    local hosts = doc.hosts or {}
    if type(hosts) ~= "table" then
        return nil, "hosts must be an object"
    end
    local count = 0
    for host, name in pairs(hosts) do
        count = count + 1
        if not valid_host(host) then
            return nil, "hosts: " .. (type(host) == "string" and host or "a key") .. " is not a host name"
        end
        if not valid_cert_name(name) then
            return nil, "hosts." .. host .. " must be a certificate name (32 hex digits)"
        end
    end
    if count > MAX_HOSTS then
        return nil, "hosts holds more than " .. MAX_HOSTS .. " names"
    end
    local certificates = doc.certificates or {}
    if type(certificates) ~= "table" then
        return nil, "certificates must be an object"
    end
    for name, pem in pairs(certificates) do
        if not valid_cert_name(name) then
            return nil, "certificates: keys must be certificate names (32 hex digits)"
        end
        if type(pem) ~= "string" or #pem > MAX_PEM or not pem:find("-----BEGIN ", 1, true) then
            return nil, "certificates." .. name .. " must be a PEM text"
        end
    end
    return true
end

local function stored(prefix)
    local out = {}
    for _, key in ipairs(dict:get_keys(0)) do
        if key:sub(1, #prefix) == prefix then
            out[key:sub(#prefix + 1)] = true
        end
    end
    return out
end

-- Under the lock. Returns the answer's status and body.
local function replace_locked(doc)
    local hosts, certificates = doc.hosts or {}, doc.certificates or {}
    local used, missing = { [doc.default] = true }, {}
    for _, name in pairs(hosts) do
        used[name] = true
    end
    -- Other ciphers may mean another security level: then every certificate is sent and checked.
    local recheck = doc.ciphers ~= dict:get("ciphers")
    local new = {}
    for name in pairs(used) do
        local held = not recheck and dict:get("cert:" .. name)
        if certificates[name] then
            if not held then
                new[#new + 1] = name
            end
        elseif not held then
            missing[#missing + 1] = name
        end
    end
    if #missing > 0 then
        table.sort(missing)
        return 409, { error = "certificates neither sent nor stored", missing = missing }
    end
    table.sort(new)
    for _, name in ipairs(new) do
        local ok, why = M.check(certificates[name], doc.ciphers)
        if not ok then
            return 400, { error = why, certificate = name }
        end
    end
    for _, name in ipairs(new) do
        -- safe_set never evicts another entry to make room: an evicted certificate would vanish.
        local ok, err = dict:safe_set("cert:" .. name, certificates[name])
        if not ok then
            return 507, { error = "could not store certificate " .. name .. ": " .. tostring(err) }
        end
    end
    local count = 0
    for host, name in pairs(hosts) do
        count = count + 1
        if dict:get("host:" .. host) ~= name then
            local ok, err = dict:safe_set("host:" .. host, name)
            if not ok then
                return 507, { error = "could not store host " .. host .. ": " .. tostring(err) }
            end
        end
    end
    dict:set("default", doc.default)
    if doc.ciphers then
        dict:set("ciphers", doc.ciphers)
    else
        dict:delete("ciphers")
    end
    for host in pairs(stored("host:")) do
        if not hosts[host] then
            dict:delete("host:" .. host)
        end
    end
    local removed = 0
    for name in pairs(stored("cert:")) do
        if not used[name] then
            dict:delete("cert:" .. name)
            removed = removed + 1
        end
    end
    return 201, { stored = #new, removed = removed, hosts = count }
end

-- The same write as POST, without HTTP (for tests). Returns the status and the answer.
function M.replace(doc)
    local ok, why = M.validate(doc)
    if not ok then
        return 400, { error = why }
    end
    local token, err = configuration.lock()
    if not token then
        return 503, { error = err }
    end
    local called, status, body = pcall(replace_locked, doc)
    configuration.unlock(token)
    if not called then
        error(status, 0)
    end
    return status, body
end

function M.view()
    local hosts, names = {}, {}
    for host in pairs(stored("host:")) do
        hosts[host] = dict:get("host:" .. host)
    end
    for name in pairs(stored("cert:")) do
        names[#names + 1] = name
    end
    table.sort(names)
    return {
        default = dict:get("default") or cjson.null,
        hosts = next(hosts) and hosts or cjson.empty_array,
        certificates = next(names) and names or cjson.empty_array,
    }
end

function M.call()
    local method = ngx.req.get_method()
    if method == "GET" then
        return configuration.respond(200, M.view())
    end
    if method ~= "POST" then
        return configuration.respond(405, { error = "use GET or POST" })
    end
    local body = configuration.read_body()
    if not body or body == "" then
        return configuration.respond(400, { error = "empty body" })
    end
    local doc, err = cjson.decode(body)
    if not doc then
        return configuration.respond(400, { error = "invalid JSON: " .. tostring(err) })
    end
    return configuration.respond(M.replace(doc))
end

-- The certificate name for an SNI name (nil: none sent): exact, wildcard of the first label, default.
function M.choose(server_name)
    if server_name then
        local name = server_name:lower()
        local chosen = dict:get("host:" .. name)
        if chosen then
            return chosen
        end
        local parent = name:match("^[^.]+(%..+)$")
        if parent then
            chosen = dict:get("host:*" .. parent)
            if chosen then
                return chosen
            end
        end
    end
    return dict:get("default")
end

local function parsed(name)
    local pair = cache:get(name)
    if pair then
        return pair
    end
    local pem = dict:get("cert:" .. name)
    if not pem then
        return nil, "certificate " .. name .. " is not stored"
    end
    local cert, err = ssl.parse_pem_cert(pem)
    if not cert then
        return nil, "certificate " .. name .. ": " .. tostring(err)
    end
    local key
    key, err = ssl.parse_pem_priv_key(pem)
    if not key then
        return nil, "certificate " .. name .. " key: " .. tostring(err)
    end
    pair = { cert, key }
    cache:set(name, pair)
    return pair
end

-- The client's SNI name: from the ClientHello, or (ssl_certificate_by_lua) as OpenSSL parsed it.
local function sni_name()
    if ngx.get_phase() == "ssl_client_hello" then
        return clienthello.get_client_hello_server_name()
    end
    return ssl.server_name()
end

-- The connection's certificate: in ssl_client_hello_by_lua (the default server's shared context),
-- or in ssl_certificate_by_lua of a server with an SSL context of its own (one whose TLS settings
-- need it, e.g. client-certificate verification: nginx switches to that context after the
-- ClientHello, dropping what was set there). Nothing stored yet (the moment between nginx's start
-- and the controller's first POST): the context's own certificate stays.
function M.serve()
    local sni = sni_name()
    local name = M.choose(sni)
    if not name then
        return
    end
    local pair, err = parsed(name)
    if not pair then
        -- Between reading the host's name and its PEM, a POST removed it: read the map again.
        name = M.choose(sni)
        pair, err = name and parsed(name)
        if not pair then
            ngx.log(ngx.ERR, "no certificate to serve: ", err)
            return
        end
    end
    local ok
    ok, err = ssl.clear_certs()
    if ok then
        ok, err = ssl.set_cert(pair[1])
    end
    if ok then
        ok, err = ssl.set_priv_key(pair[2])
    end
    if not ok then
        ngx.log(ngx.ERR, "cannot set certificate ", name, ": ", err)
        return ngx.exit(ngx.ERROR)
    end
end

return M
