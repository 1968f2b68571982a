-- wrk script for `make bench` (bench/load.py runs it), set by the environment:
--   BENCH_MODE      "get" (the empty endpoint, /healthz), "check" (one case per request,
--                   drawn at random) or "batch" (100 cases drawn at random, /v1/check/batch)
--   BENCH_CASES     a file of check bodies, one JSON object per line
--   BENCH_KEY       an API key with the decide scope
--   BENCH_DELAY_MS  when above 0, each connection waits that long after each answer
--                   (latency at a load the service keeps up with)
-- `done` prints the run's figures as one JSON line.

local mode = os.getenv("BENCH_MODE") or "get"
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local bodies = {}

function init(args)
  if mode ~= "get" then
    for line in io.lines(os.getenv("BENCH_CASES")) do
      bodies[#bodies + 1] = line
    end
    wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
    wrk.headers["Content-Type"] = "application/json"
  end
end

function request()
  if mode == "check" then
    return wrk.format("POST", "/v1/check", nil, bodies[math.random(#bodies)])
  elseif mode == "batch" then
    local picked = {}
    for i = 1, 100 do
      picked[i] = bodies[math.random(#bodies)]
    end
    return wrk.format("POST", "/v1/check/batch", nil, '{"checks":[' .. table.concat(picked, ",") .. "]}")
  end
  return wrk.format("GET", "/healthz")
end

-- Defined only when pacing: wrk looks for it when the script loads.
if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.6f, "p50_us": %d, "p99_us": %d, "connect": %d, ' ..
      '"read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
