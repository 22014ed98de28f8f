-- wrk script: POST unique sign-up bodies (jwt profile shape) and report JSON.
--   wrk -s bench/signup.lua URL -- PREFIX PATH
-- Every request carries a new username and address: PREFIX .. thread .. "n" .. counter.
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  prefix = args[1] or "b"
  path = args[2] or "/api/sign-up/"
  counter = 0
end

function request()
  counter = counter + 1
  local name = prefix .. tid .. "n" .. counter
  local body = '{"username":"' .. name .. '","email":"' .. name
    .. '@example.com","password":"Str0ng-passphrase"}'
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bad_status":%d,"socket_errors":%d,'
    .. '"p50_us":%d,"p90_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
