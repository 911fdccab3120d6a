-- wrk hooks: done() prints one JSON line (totals, error counts, latency percentiles in microseconds);
-- an optional first script argument N stops the thread after N responses (the RSS runs need a count,
-- not a duration). Without it no response() hook exists, so throughput runs pay no per-response Lua.
init = function(args)
  local limit = tonumber(args[1] or '')
  if limit then
    local seen = 0
    response = function()
      seen = seen + 1
      if seen == limit then wrk.thread:stop() end
    end
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"durationUs":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.2f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
