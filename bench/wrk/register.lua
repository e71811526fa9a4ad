-- POST /api/users with a new username each time (BENCH_PREFIX, wrk thread, counter)
-- and the password BENCH_PASSWORD.
local counter = 0
local sent = 0

function setup(thread)
  thread:set("thread_id", counter)
  counter = counter + 1
end

function init(args)
  prefix = os.getenv("BENCH_PREFIX") or "r"
  password = os.getenv("BENCH_PASSWORD")
end

function request()
  sent = sent + 1
  local body = string.format('{"username":"%s%d_%d","password":"%s"}',
    prefix, thread_id, sent, password)
  return wrk.format("POST", "/api/users", {["Content-Type"] = "application/json"}, body)
end
