-- wrk script for the purchase capture benchmark (driven by bench/run.py; see bench/README.md).
--
-- Two modes, chosen by the arguments after `--`:
--   random <pool> <size>   POST one purchase per request for an email drawn at random from a
--                          pool of <size> addresses named after <pool>; every 4th address of the
--                          pool is written in mixed case (the service stores it lower-cased).
--   file <path> [target]   POST the request bodies of <path> (one JSON body per line) once each,
--                          in order, to <target> (default /api/v1/purchases; the batch phase
--                          gives /api/v1/purchases/batch); when every one has been answered the
--                          thread prints BUDGET_DONE on stderr and stops (run.py then ends wrk
--                          with SIGINT). Run it with one thread (-t1).
-- done() prints one line `BENCH_JSON {...}` with the counts and latency percentiles.

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local mode, pool, size
local bodies, next_body, budget, target
-- globals, so that done() can read them from each thread with thread:get()
non2xx, posted, answered = 0, 0, 0
local headers = { ["Content-Type"] = "application/json" }
local items = { "book", "pen", "T-shirt", "mug", "notebook", "poster", "sticker", "bag" }
local first_names = { "Tim", "Sue", "Ana", "Bo", "Chen", "Dev", "Eva", "Farid" }
local health_request

local function email(n)
  if n % 4 == 0 then
    -- mixed case: the same customer whichever way it is written
    return string.format("Customer.%d@%s.Example.COM", n, string.upper(pool))
  end
  return string.format("customer.%d@%s.example.com", n, pool)
end

function init(args)
  mode = args[1] or "random"
  health_request = wrk.format("GET", "/healthz")
  if mode == "file" then
    bodies = {}
    for line in io.lines(args[2]) do
      if #line > 0 then
        bodies[#bodies + 1] = line
      end
    end
    budget = #bodies
    next_body = 1
    target = args[3] or "/api/v1/purchases"
  else
    pool = args[2] or "pool"
    size = tonumber(args[3] or "10000")
    math.randomseed(os.time() * 1000 + id)
  end
end

-- wrk calls request() once on the first thread before any connection opens, only to check the
-- request's shape: that call must not use up a body.
local checked = false

function request()
  if mode == "file" then
    if not checked and id == 1 then
      checked = true
      return health_request
    end
    if next_body > budget then
      -- every body is on its way: keep the remaining connections busy with a no-op
      return health_request
    end
    local body = bodies[next_body]
    next_body = next_body + 1
    return wrk.format("POST", target, headers, body)
  end
  local n = math.random(1, size)
  local body = string.format(
    '{"customer":{"email":"%s","name":"%s %d"},"item":"%s","quantity":%d,'
      .. '"unit_price":"%d.%02d","currency":"EUR"}',
    email(n),
    first_names[math.random(1, #first_names)],
    n,
    items[math.random(1, #items)],
    math.random(1, 5),
    math.random(0, 199),
    math.random(0, 99)
  )
  return wrk.format("POST", "/api/v1/purchases", headers, body)
end

function response(status, headers, body)
  if mode == "file" then
    if status == 200 then
      return -- a /healthz filler
    end
    answered = answered + 1
  end
  posted = posted + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
  if mode == "file" and answered == budget then
    io.stderr:write("BUDGET_DONE\n")
    io.stderr:flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local total_non2xx, total_posted = 0, 0
  for _, thread in ipairs(threads) do
    total_non2xx = total_non2xx + (thread:get("non2xx") or 0)
    total_posted = total_posted + (thread:get("posted") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"posted":%d,"duration_us":%d,"non2xx":%d,'
      .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, total_posted, summary.duration, total_non2xx,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean
  ))
end
