-- wrk script: send the requests listed in a file, each once, spread over the threads.
--   wrk -t T -s bench/replay.lua URL -- FILE T
-- FILE lines: "GET<TAB>path" or "POST<TAB>path<TAB>json body". A thread that runs out
-- of lines starts again from its first: the bench sizes FILE so that none does, and
-- flags a run with more requests than lines.
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  local file, count = args[1], tonumber(args[2])
  lines, i = {}, 0
  local n = 0
  local all = {}
  for line in io.lines(file) do
    n = n + 1
    table.insert(all, line)
    if (n - tid) % count == 0 then
      table.insert(lines, line)
    end
  end
  if #lines == 0 then
    lines = all -- fewer lines than threads (the bare GET): every thread sends them all
  end
end

function request()
  i = i + 1
  if i > #lines then
    i = 1
  end
  local method, path, body = lines[i]:match("^(%u+)\t([^\t]+)\t?(.*)$")
  if method == "POST" then
    return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
  end
  return wrk.format("GET", path)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bad_status":%d,"socket_errors":%d,'
    .. '"p50_us":%d,"p90_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
