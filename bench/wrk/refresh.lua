-- POST /api/token/refresh, each connection rotating its own refresh token: the
-- token from every answer is used for a later request. BENCH_TOKENS holds one refresh
-- token a line; wrk thread i takes lines [i*BENCH_PER_THREAD, (i+1)*BENCH_PER_THREAD):
-- one per connection plus one, as wrk calls request() once more on its first thread.
local counter = 0
local pool = {}

function setup(thread)
  thread:set("thread_id", counter)
  counter = counter + 1
end

function init(args)
  local per_thread = tonumber(os.getenv("BENCH_PER_THREAD"))
  local index = 0
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if #line > 0 then
      if math.floor(index / per_thread) == thread_id then table.insert(pool, line) end
      index = index + 1
    end
  end
end

function request()
  local token = table.remove(pool, 1) or "none-left"
  return wrk.format("POST", "/api/token/refresh", {["Content-Type"] = "application/json"},
    '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if token then table.insert(pool, token) end
end
