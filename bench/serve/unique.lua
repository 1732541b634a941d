-- wrk script: every request is a new decision (scored and durably stored),
-- never an idempotent replay: each transaction gets a transaction_id unique to
-- the run. Prints the same RESULT line as the peer's post.lua.
--
-- Bodies come from one of:
--   WRK_BODIES_FILE  JSON lines, one transaction each (e.g. simulated traffic,
--                    made by bench/serve_vs_peer.sh); requests cycle through
--                    them, WRK_BATCH (default 1) per request — more than one
--                    makes a JSON array for the batch endpoints
--   WRK_BODY_FILE    one JSON body (object or array, like the peer's bodies);
--                    each request also gets a customer from a pool of 20,000,
--                    a terminal from 5,000 and an event time 10 ms after the
--                    previous request's, as live traffic would
-- Other settings:
--   WRK_API_KEY      value of X-API-Key
--   WRK_DELAY_MS     pause of each connection between requests (for a fixed,
--                    lower request rate: connections x 1000 / (delay + latency))
--   WRK_RETRY_AFTER  1: after a 503, wait as long as its Retry-After says
--                    before the next request (as a well-behaved client does)
-- thread_id is a global: thread:set() writes it into each thread's own Lua state
local counter = 0
local template = nil
local lines = nil
local batch = tonumber(os.getenv("WRK_BATCH") or "") or 1
local threads = {}
local run = tostring(os.time())
-- WRK_BASE_MS: the first event time of WRK_BODY_FILE requests (ms); it must be inside
-- the served state's event-time window (event_time.max_lateness), or they get 422
local base_ms = tonumber(os.getenv("WRK_BASE_MS") or "") or 1764201652000
local pause = tonumber(os.getenv("WRK_DELAY_MS") or "")

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local many = os.getenv("WRK_BODIES_FILE")
  if many ~= nil and many ~= "" then
    lines = {}
    for line in io.lines(many) do
      if line ~= "" then
        table.insert(lines, line)
      end
    end
  else
    local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
    template = f:read("*a")
    f:close()
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  local key = os.getenv("WRK_API_KEY")
  if key ~= nil and key ~= "" then
    wrk.headers["X-API-Key"] = key
  end
end

local honor_retry_after = os.getenv("WRK_RETRY_AFTER") == "1"
-- wrk keeps one Lua state per thread: the wait set by a 503 applies to the
-- next request the thread sends, near enough to the same connection's
local retry_wait_ms = 0

if honor_retry_after then
  function response(status, headers, body)
    if status == 503 then
      local seconds = tonumber(headers["Retry-After"] or headers["retry-after"] or "") or 1
      retry_wait_ms = seconds * 1000
    end
  end
end

if (pause ~= nil and pause > 0) or honor_retry_after then
  function delay()
    local wait = (pause or 0) + retry_wait_ms
    retry_wait_ms = 0
    return wait
  end
end

local function unique_ids(body)
  local n = 0
  return (body:gsub('"transaction_id": *"[^"]*"', function()
    n = n + 1
    return string.format('"transaction_id": "b%s-%d-%d-%d"', run, thread_id, counter, n)
  end))
end

function request()
  counter = counter + 1
  local body
  if lines ~= nil then
    local parts = {}
    for i = 1, batch do
      local idx = ((counter * batch + i) * 2 + thread_id) % #lines + 1
      parts[i] = lines[idx]
    end
    body = table.concat(parts, ",")
    if batch > 1 then
      body = "[" .. body .. "]"
    end
    body = unique_ids(body)
  else
    body = unique_ids(template)
    local n = 0
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
  end
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
