-- wrk script of B1: posts pre-signed deliveries (one JSON body per line of BENCH_BODIES).
-- Run with as many connections as threads: each thread then has one request in flight at a
-- time, so each response belongs to the request just sent and every body's answer is known.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(os.getenv("BENCH_THREADS"))
  lines, bodies = {}, {}
  local i = 0
  for line in io.lines(os.getenv("BENCH_BODIES")) do
    if i % nthreads == id then
      table.insert(lines, i)
      table.insert(bodies, line)
    end
    i = i + 1
  end
  headers = {["Content-Type"] = "application/json"}
  sent, pending, answers, wrapped = 0, nil, {}, 0
end

function request()
  sent = sent + 1
  local k = sent
  if k > #bodies then
    -- Out of fresh bodies: resend (answered as duplicates); counted so the report shows it.
    wrapped = wrapped + 1
    k = (k - 1) % #bodies + 1
  end
  pending = lines[k]
  return wrk.format("POST", nil, headers, bodies[k])
end

function response(status, headers, body)
  if pending ~= nil and answers[pending] == nil then
    answers[pending] = status
  end
  pending = nil
end

function done(summary, latency, requests)
  local out = io.open(os.getenv("BENCH_OUT"), "w")
  out:write(string.format('{"requests": %d, "duration_us": %d, "bytes": %d, ',
    summary.requests, summary.duration, summary.bytes))
  out:write(string.format('"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ',
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout))
  out:write(string.format('"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %f}, ',
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
  local wrapped_total = 0
  out:write('"answers": {')
  local first = true
  for _, thread in ipairs(threads) do
    wrapped_total = wrapped_total + (thread:get("wrapped") or 0)
    for line, status in pairs(thread:get("answers") or {}) do
      if not first then out:write(",") end
      first = false
      out:write(string.format('"%d": %d', line, status))
    end
  end
  out:write(string.format('}, "wrapped": %d}', wrapped_total))
  out:close()
end
