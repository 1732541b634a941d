-- wrk script: POST a JSON body whose transaction_id is unique per request, so
-- every request is a new decision (scored and durably stored), never an
-- idempotent replay. Each object also gets a customer from a pool of 20,000, a
-- terminal from a pool of 5,000 and an event time that moves forward by 10 ms
-- per request, as live traffic does (a fixed body would pile every request
-- onto one customer at one instant). Same environment as the peer's post.lua:
--   WRK_BODY_FILE  JSON body (one object, or an array for batch paths)
--   WRK_API_KEY    value of X-API-Key
--   WRK_DELAY_MS   pause of each connection between requests (for a fixed,
--                  lower request rate: connections x 1000 / (delay + latency))
-- The id of each object becomes "<prefix>-<thread>-<counter>[-<n>]".
-- Prints the same RESULT line as the peer's post.lua.
-- thread_id is a global: thread:set() writes it into each thread's own Lua state
local counter = 0
local template = nil
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
  template = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  local key = os.getenv("WRK_API_KEY")
  if key ~= nil and key ~= "" then
    wrk.headers["X-API-Key"] = key
  end
end

local run = tostring(os.time())

local base_ms = 1764201652000
local pause = tonumber(os.getenv("WRK_DELAY_MS") or "")

if pause ~= nil and pause > 0 then
  function delay()
    return pause
  end
end

function request()
  counter = counter + 1
  local n = 0
  local body = template:gsub('"transaction_id": *"[^"]*"', function()
    n = n + 1
    return string.format('"transaction_id": "b%s-%d-%d-%d"', run, thread_id, counter, n)
  end)
  n = 0
  body = body:gsub('"customer_id": *"[^"]*"', function()
    n = n + 1
    return string.format('"customer_id": "c%d"', (counter * 7919 + n * 104729 + thread_id * 31) % 20000)
  end)
  body = body:gsub('"terminal_id": *"[^"]*"', function()
    n = n + 1
    return string.format('"terminal_id": "t%d"', (counter * 3571 + n * 7907 + thread_id * 17) % 5000)
  end)
  body = body:gsub('"timestamp": *"[^"]*"', function()
    return string.format('"timestamp": %d', base_ms + counter * 10)
  end)
  return wrk.format(nil, nil, nil, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d duration_s=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d mean_us=%.0f max_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
