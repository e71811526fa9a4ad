-- GET BENCH_PATH with "Authorization: Bearer <token>", rotating through the access
-- tokens listed (one a line) in the file BENCH_TOKENS.
local path = os.getenv("BENCH_PATH") or "/api/resource"
local tokens = {}
local next_index = 1

function init(args)
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if #line > 0 then table.insert(tokens, line) end
  end
  -- Threads start at different places in the list.
  next_index = (math.random(#tokens) - 1) % #tokens + 1
end

function request()
  local token = tokens[next_index]
  next_index = next_index % #tokens + 1
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. token})
end
